"""The reference training script of fastgsl: ``python -m fastgsl.train`` (see ``fastgsl/train/README.md``).

One concept per module: ``synthetic`` (built-in data), ``layouts`` (MSD and nnU-Net v2 folders), ``preprocess`` (task,
preprocessing), ``dataset`` (data resolution, cache, folds), ``sampling`` (patches and augmentation),
``model`` (nnU-Net topology on MONAI DynUNet), ``objectives`` (losses, schedules, class weights),
``distributed`` (torchrun process group), ``loop`` (training one run), ``evaluate`` (sliding window and
metrics), ``checkpoint``, ``paper`` (published tables), ``statistics`` (intervals, paired tests, verdicts), ``report``,
``figures``, ``config``, ``cli``, ``run``, ``calibration`` (the built-in task's baseline-only calibration).
Needs the ``train`` extra (MONAI, nibabel, matplotlib, tqdm).
"""
