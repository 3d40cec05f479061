"""Shared pytest setup.

The Triton interpreter must be switched on before triton is first imported, and several test files import
triton (through fastgsl) in the same process; setting it here, before any test module is collected, is the one
place that is early enough.  Where a CUDA device exists the real kernels run instead (GPU tests use cuda tensors).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402

from fastgsl import observe  # noqa: E402


@pytest.fixture
def seen():
    """The engines every fastgsl operation used during the test (``seen.last("edt")``, ...)."""
    with observe.engines() as record:
        yield record
