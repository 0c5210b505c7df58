"""Plain U-Net regression baseline: one network, trained with an L1 loss (recipe "unet").

The network is the classic U-Net of :class:`~napari_medtrans.translators.blocks.UNet` (3x3 conv-norm-act blocks,
skip connections, tanh output in [-1, 1]). It is deterministic and one-shot. ``create_translator("unet",
width=16, depth=4)`` is a CPU-sized model; ``width=64`` is the size of Ronneberger et al. 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import TranslationOutput, Translator, TranslatorSpec, register_translator
from .blocks import UNet, _as_tuple, _int_arg, check_batch

__all__ = ["UNetTranslator", "unet"]


class UNetTranslator(Translator):
    """A :class:`~napari_medtrans.translators.blocks.UNet` behind the Translator protocol."""

    def __init__(self, spec: TranslatorSpec, config: dict, net: torch.nn.Module):
        super().__init__(spec, config)
        self.net = net

    def translate(self, x: torch.Tensor, *, steps: int | None = None,
                  generator: torch.Generator | None = None) -> TranslationOutput:
        """Translate a batch ``[B, C_in, H, W]`` in [-1, 1]; ``steps`` and ``generator`` are ignored."""
        check_batch(x, len(self.spec.inputs), self.spec.size_multiple)
        return TranslationOutput(image=self.net(x))


@register_translator("unet")
def unet(
    *,
    inputs: Sequence[str] | str = ("T1",),
    outputs: Sequence[str] | str = ("T2",),
    width: int = 64,
    depth: int = 4,
    convs: int = 2,
    norm: str = "batch",
    act: str = "leakyrelu",
    dropout: float = 0.0,
    pool: str = "conv",
) -> UNetTranslator:
    """Build a U-Net regression translator with random weights.

    Parameters
    ----------
    inputs, outputs : sequence of str
        Input and output modalities, one channel each (e.g. ``("T1",)`` -> ``("T2",)``).
    width : int
        Channels at full resolution (64 as in the paper; 8 or 16 for a CPU-sized model).
    depth : int
        Downsampling levels; slices must be multiples of ``2**depth`` (``spec.size_multiple``).
    convs : int
        3x3 conv blocks per level.
    norm, act : str
        Normalisation ("batch", "instance", "group", "layer", "none") and activation names.
    dropout : float
        Dropout in the two innermost levels during training (0 for none).
    pool : {"conv", "max"}
        Downsampling by strided convolution or max-pooling.
    """
    inputs = _as_tuple(inputs, "inputs")
    width = _int_arg("width", width)
    depth = _int_arg("depth", depth)
    convs = _int_arg("convs", convs)
    outputs = _as_tuple(outputs, "outputs")
    config = dict(inputs=list(inputs), outputs=list(outputs), width=int(width), depth=int(depth), convs=int(convs),
                  norm=str(norm), act=str(act), dropout=float(dropout), pool=str(pool))
    net = UNet(len(inputs), len(outputs), width=int(width), depth=int(depth), convs=int(convs), norm=norm, act=act,
               dropout=float(dropout), pool=pool)
    spec = TranslatorSpec(method="unet", inputs=inputs, outputs=outputs, size_multiple=2 ** int(depth),
                          paired=True, stochastic=False)
    return UNetTranslator(spec, config, net)
