"""``python -m fastgsl.train`` / ``fastgsl-train``: train, evaluate, print the table and the verdicts."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    from fastgsl.train.cli import parse_config
    from fastgsl.train.run import run_experiment
    try:
        cfg = parse_config(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from fastgsl.train.layouts import DatasetError
    try:
        result = run_experiment(cfg)
    except (DatasetError, FileNotFoundError) as e:  # bad data: the message names the case and file
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.markdown:
        print()
        print(result.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
