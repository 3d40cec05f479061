"""``python -m fastgsl.nnunet`` is ``fastgsl-nnunet``."""
from fastgsl.nnunet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
