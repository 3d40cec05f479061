"""``StatSpec``: what one statistics pass computes (which stats, which activation, how labels map to channels)."""
from __future__ import annotations

from dataclasses import dataclass

from fastgsl.ops.voxel_stats.layout import ACTIVATIONS, CE, K, mask_of


@dataclass(frozen=True)
class StatSpec:
    """What one statistics pass computes.

    ``needs`` is the set of stat indices to compute (others come out as 0).  ``label_offset`` maps an integer
    label map to channels: ``T_c = (label == c + label_offset)``; it is 1 only for a one-channel sigmoid, where
    labels are {0, 1} and the channel is the foreground.

    The losses validate their options when they are built; a spec only asserts what they guarantee.
    """

    activation: str
    needs: frozenset
    label_offset: int = 0

    def __post_init__(self):
        assert self.activation in ACTIVATIONS, self.activation
        assert not (CE in self.needs and self.activation == "none"), "cross-entropy needs logits"

    @property
    def mask(self) -> int:
        return mask_of(self.needs)

    @classmethod
    def from_mask(cls, mask: int, activation: str, label_offset: int = 0) -> "StatSpec":
        return cls(activation, frozenset(k for k in range(K) if mask >> k & 1), label_offset)

    def merged(self, other: "StatSpec") -> "StatSpec":
        if (self.activation, self.label_offset) != (other.activation, other.label_offset):
            raise ValueError("losses sharing one statistics pass must use the same activation")
        return StatSpec(self.activation, self.needs | other.needs, self.label_offset)
