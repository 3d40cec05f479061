"""nnU-Net v2 integration (``pip install "fastgsl[nnunet]"``, nnunetv2 >= 2.8.1).

* Trainers (``fastgsl.nnunet.variants``), found by nnU-Net itself through the plain folder of modules that
  ``fastgsl-nnunet path`` prints, to be listed in ``nnUNet_extTrainer`` (nnunetv2's
  ``utilities/find_objects.py`` searches those folders after its built-in trainers).  For an nnunetv2 without
  that variable, ``fastgsl-nnunet install`` writes a one-line re-export module into its trainer folder.
* The losses they train with (``fastgsl.nnunet.loss``): fastgsl's fused losses with nnU-Net's own settings,
  the distance maps computed on the fly at every deep-supervision scale.
* ``fastgsl-nnunet evaluate`` (``fastgsl.nnunet.evaluate``): nnU-Net's ``summary.json`` plus HD95, ASD and
  NSD from ``fastgsl.metrics``.

``import fastgsl`` does not import this subpackage, and importing this package does not import nnunetv2: only
the trainer, loss and evaluation modules do.
"""
