"""``fastgsl-nnunet path | install | uninstall | evaluate`` (also ``python -m fastgsl.nnunet``)."""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastgsl-nnunet", description="fastgsl trainers and evaluation for nnU-Net v2")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("path", help="print the trainer folder to list in nnUNet_extTrainer "
                                "(export nnUNet_extTrainer=$(fastgsl-nnunet path))")
    sub.add_parser("install", help="for an nnunetv2 without nnUNet_extTrainer: write a one-line re-export module "
                                   "into nnunetv2's own trainer folder (prints what it wrote)")
    sub.add_parser("uninstall", help="remove what install wrote, and its bytecode (prints what it removed)")
    e = sub.add_parser("evaluate", help="nnUNetv2_evaluate_folder's summary.json plus HD95, ASD and NSD")
    e.add_argument("gt_folder", help="folder with the reference segmentations")
    e.add_argument("pred_folder", help="folder with the predicted segmentations")
    e.add_argument("-djfile", required=True, help="dataset.json file")
    e.add_argument("-pfile", required=True, help="plans.json file")
    e.add_argument("-o", default=None, help="output file (default: pred_folder/summary.json)")
    e.add_argument("-np", type=int, default=2, help="threads reading the files (default: 2)")
    e.add_argument("--chill", action="store_true", help="allow references that have no prediction")
    e.add_argument("--tolerance", type=float, default=1.0,
                   help="NSD tolerance in the images' spacing units (default: 1.0)")
    e.add_argument("--conventions", nargs="+", default=["monai", "paper"], choices=["monai", "paper"],
                   help="surface-metric conventions to report (default: both)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "path":
        from fastgsl.nnunet.install import trainer_folder

        print(trainer_folder())
        return 0
    if args.command in ("install", "uninstall"):
        from fastgsl.nnunet import install as inst

        try:
            lines = inst.install() if args.command == "install" else inst.uninstall()
        except RuntimeError as e:
            print(f"fastgsl-nnunet {args.command}: {e}", file=sys.stderr)
            return 1
        print("\n".join(lines))
        return 0
    from fastgsl.nnunet.evaluate import evaluate_folder

    summary = evaluate_folder(args.gt_folder, args.pred_folder, args.djfile, args.pfile, args.o, args.np,
                              args.chill, args.tolerance, tuple(args.conventions), not args.no_progress)
    fg = summary["foreground_mean"]
    print("foreground mean: " + ", ".join(f"{k} {v:.4f}" for k, v in fg.items()
                                          if k in ("Dice", "HD95", "ASD", "NSD", "HD95_paper", "ASD_paper")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
