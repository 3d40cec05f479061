"""The layout of the voxel-statistics op: the one definition every implementation reads.

The statistics pass writes a ``(B, C, K)`` float tensor; ``stats[b, c, k]`` is the sum over the voxels ``i`` of
item ``b`` of the term ``k`` below, for class ``c`` (P is the activated prediction, T the target, D the
ground-truth DTM, Dp the DTM of the thresholded prediction):

=========  =====================================  ==================================
index      sum over voxels i                      used by
=========  =====================================  ==================================
``I``      ``P T``                                Dice, GDL
``SP``     ``P``                                  Dice, GDL
``SP2``    ``P^2``                                Dice / GDL with ``squared_pred``
``ST``     ``T``                                  Dice, GDL (and its weights)
``ST2``    ``T^2``                                Dice / GDL with ``squared_pred``
``CE``     ``-T log P`` (softmax), BCE (sigmoid)  cross-entropy
``SURF``   ``(D (1 - T - P))^2``                  GSL numerator (eq. 12)
``D2``     ``D^2``                                GSL denominator
``DP``     ``D P``                                Boundary loss (eq. 9)
``HAUS``   ``(T - P)^2 (D^2 + Dp^2)``             Hausdorff loss (eq. 7)
=========  =====================================  ==================================

Gradients with respect to P (D and Dp are constants, as in the papers)::

    dI/dP = T, dSP/dP = 1, dSP2/dP = 2P, dSURF/dP = -2 D^2 (1 - T - P), dDP/dP = D,
    dHAUS/dP = -2 (T - P)(D^2 + Dp^2),  and ST, ST2, D2 do not depend on P.

For ``CE`` the logits gradient is taken directly: softmax ``sum_c w_c (-T_c log p_c)`` gives
``p_j sum_c w_c T_c - w_j T_j``; sigmoid BCE gives ``w_j (p_j - T_j)``.

Who reads this file: the PyTorch and C++ host passes (``host.py``), the Triton kernels (``triton_passes.py``, as
named ``constexpr`` s) and the naive reference (``fastgsl.reference``).  The C++ source includes
``kernels/voxel_stats_layout.h``, which is generated from this file (``python -m fastgsl.ops.voxel_stats.layout``
rewrites it); the built library also reports :data:`LAYOUT_SIGNATURE`, and the loader refuses a library whose
signature differs, so a reorder here without regenerating the header cannot pass silently.

This module imports nothing but the standard library.
"""
from __future__ import annotations

from pathlib import Path

#: the statistics, in storage order along the last axis
STAT_NAMES = ("I", "SP", "SP2", "ST", "ST2", "CE", "SURF", "D2", "DP", "HAUS")
K = len(STAT_NAMES)
I, SP, SP2, ST, ST2, CE, SURF, D2, DP, HAUS = range(K)
#: stats that read the ground-truth DTM
DTM_STATS = frozenset({SURF, D2, DP, HAUS})
#: stats whose value depends on P (and therefore have a gradient-pass term)
P_STATS = frozenset({I, SP, SP2, CE, SURF, DP, HAUS})
#: stats that read the DTM and depend on P: what the gradient pass needs D for
DTM_P_STATS = DTM_STATS & P_STATS

#: activation names; their position is the code the kernels receive
ACTIVATIONS = ("softmax", "sigmoid", "none")
ACT_CODE = {name: code for code, name in enumerate(ACTIVATIONS)}
#: logits dtypes of the C++ passes (torch dtype names), position = code
LOGIT_DTYPES = ("float32", "float16", "bfloat16")
#: target dtypes of the C++ passes (float target or integer labels), position = code
TARGET_DTYPES = ("float32", "int64", "int32", "uint8")

#: stat sets that the C++ passes compile for (fp32 logits, int64 labels, a softmax over 2 to 5 channels, in the
#: AVX2 and AVX-512 builds): Dice-CE with squared (the paper's eq. 3) or plain denominators, alone or with GSL, the
#: Boundary loss or the Hausdorff loss, which are the objectives of ``fastgsl.train`` and of the nnU-Net trainers.
#: A set known when the pass is compiled loses its per-group tests; every other set runs the build that reads it
#: at run time, which adds in the same order and gives the same bits.  The gradient pass compiles each set's
#: P-dependent part (:data:`P_STATS`).  Each entry costs about 2 s of compile time (the eight: 55 to 73 s).
_DICE_CE = (frozenset({I, SP2, ST2, CE}), frozenset({I, SP, ST, CE}))
COMPILED_NEEDS = tuple(dice | extra for dice in _DICE_CE
                       for extra in (frozenset(), frozenset({SURF, D2}), frozenset({DP}), frozenset({HAUS})))

#: what the C++ library must report (``fastgsl_stats_layout()``) to be loaded
LAYOUT_SIGNATURE = ";".join(",".join(names) for names in (STAT_NAMES, ACTIVATIONS, LOGIT_DTYPES, TARGET_DTYPES))


def mask_of(stats) -> int:
    """The bit mask of a set of stat indices (bit ``k`` for stat ``k``), as the kernels take it."""
    return sum(1 << k for k in stats)


def _compiled_masks(sets) -> list:
    masks = []
    for needs in sets:
        if mask_of(needs) not in masks:
            masks.append(mask_of(needs))
    return masks


_CXX_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32", "uint8": "U8"}


def cxx_header() -> str:
    """The text of ``kernels/voxel_stats_layout.h``."""
    def enum(prefix, names):
        return "enum { " + ", ".join(f"{prefix}{n} = {i}" for i, n in enumerate(names)) + " };"

    return "\n".join([
        "// Generated from fastgsl/ops/voxel_stats/layout.py by `python -m fastgsl.ops.voxel_stats.layout`: do not",
        "// edit. The (B, C, NK) statistics layout and the argument codes of kernels/voxel_stats_host.cpp.",
        "#pragma once",
        "",
        f"constexpr int NK = {K};  // stats per (b, c)",
        enum("S_", STAT_NAMES),
        enum("ACT_", [a.upper() for a in ACTIVATIONS]),
        enum("Z_", [_CXX_DTYPE[d] for d in LOGIT_DTYPES]),
        enum("T_", [_CXX_DTYPE[d] for d in TARGET_DTYPES]),
        f'#define FASTGSL_STATS_LAYOUT "{LAYOUT_SIGNATURE}"',
        "// The stat sets with builds of their own (COMPILED_NEEDS): X(forward mask) and, deduplicated, Y(gradient mask)",
        "#define FASTGSL_STATS_NEED_LIST " + " ".join(f"X({m})" for m in _compiled_masks(COMPILED_NEEDS)),
        "#define FASTGSL_STATS_GRAD_NEED_LIST " + " ".join(
            f"Y({m})" for m in _compiled_masks(n & P_STATS for n in COMPILED_NEEDS)),
        "",
    ])


HEADER_NAME = "voxel_stats_layout.h"


def write_header(kernel_dir: Path) -> Path:
    path = Path(kernel_dir) / HEADER_NAME
    path.write_text(cxx_header())
    return path


if __name__ == "__main__":
    print(write_header(Path(__file__).resolve().parents[3] / "kernels"))
