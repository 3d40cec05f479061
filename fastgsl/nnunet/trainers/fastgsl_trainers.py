"""The folder nnU-Net searches (``nnUNet_extTrainer``): every fastgsl trainer, defined in fastgsl.nnunet.variants.

nnU-Net imports the modules of this folder as top-level modules and drops them from ``sys.modules`` after its
search; the classes live in the package, so they are defined once whichever way they are found.
"""
from fastgsl.nnunet.variants import *  # noqa: F401,F403
from fastgsl.nnunet.variants import __all__  # noqa: F401
