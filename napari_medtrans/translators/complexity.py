"""Sizes of translators: the meta-tensor pieces that the methods' ``model_complexity`` functions share.

The networks run on "meta" tensors (shapes only: no memory, no arithmetic) under
:class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per multiply-add of convolutions and
matrix products.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # for annotations only: base imports the registry, which imports this module
    from .base import Translator

__all__ = ["count_flops", "to_meta", "meta_slice"]


def count_flops(fn, *args) -> int:
    """FLOPs of ``fn(*args)`` as :class:`~torch.utils.flop_counter.FlopCounterMode` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def to_meta(model: nn.Module) -> nn.Module:
    """``model`` itself when it is on the meta device already, else a copy there (the original is untouched)."""
    import copy

    if all(p.device.type == "meta" for p in model.parameters()):
        return model
    clone = copy.deepcopy(model)
    return clone.to("meta")


def meta_slice(model: Translator, size: int) -> tuple[nn.Module, torch.Tensor]:
    """``(meta, x)``: ``model`` on the meta device (:func:`to_meta`) and a meta batch ``x`` of one input slice
    ``[1, len(spec.inputs), side, side]``, ``side`` being ``size`` rounded up to ``spec.size_multiple``."""
    m = model.spec.size_multiple
    side = -(-int(size) // m) * m
    x = torch.zeros(1, len(model.spec.inputs), side, side, device=torch.device("meta"))
    return to_meta(model), x
