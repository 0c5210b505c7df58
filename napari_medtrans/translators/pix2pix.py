"""pix2pix (Isola et al. 2017): U-Net generator trained against a PatchGAN discriminator with L1 + adversarial loss.

The Translator holds only the generator (:class:`~napari_medtrans.translators.blocks.Pix2PixUNet`); the 70x70
PatchGAN discriminator, the losses (vanilla GAN / binary cross-entropy by default, least squares on request;
lambda_L1 = 100) and the two optimisers belong to the training recipe ``"pix2pix"`` in
:mod:`napari_medtrans.training.recipes`.

Test-time dropout. The paper keeps dropout active at test time as its only source of noise. By default this
translator is deterministic (``stochastic=False``): in ``eval()`` mode dropout is off and one input always gives
one output. ``test_dropout=True`` keeps dropout on while translating; the spec then says ``stochastic=True`` and
``translate(x, generator=g)`` draws the dropout masks from a seed taken from ``g``, so a seeded run repeats.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import TranslationOutput, Translator, TranslatorSpec, register_translator
from .blocks import Pix2PixUNet, _as_tuple, _int_arg, check_batch, init_normal

__all__ = ["Pix2PixTranslator", "pix2pix"]


class Pix2PixTranslator(Translator):
    """The pix2pix generator behind the Translator protocol (the discriminator lives in the recipe)."""

    def __init__(self, spec: TranslatorSpec, config: dict, net: nn.Module, *, test_dropout: bool = False):
        super().__init__(spec, config)
        self.net = net
        self.test_dropout = bool(test_dropout)

    def translate(self, x: torch.Tensor, *, steps: int | None = None,
                  generator: torch.Generator | None = None) -> TranslationOutput:
        """Translate a batch ``[B, C_in, H, W]`` in [-1, 1] to ``[B, C_out, H, W]`` in [-1, 1].

        ``steps`` is ignored. ``generator`` seeds the dropout masks when the model was built with
        ``test_dropout=True`` and is in eval mode; otherwise it is ignored.
        """
        check_batch(x, len(self.spec.inputs), self.spec.size_multiple)
        if not self.test_dropout or self.training:
            return TranslationOutput(image=self.net(x))
        dropouts = [m for m in self.net.modules() if isinstance(m, nn.Dropout)]
        seed = None
        if generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for m in dropouts:
                m.train()
            try:
                image = self.net(x)
            finally:
                for m in dropouts:
                    m.eval()
        return TranslationOutput(image=image)


@register_translator("pix2pix")
def pix2pix(
    *,
    inputs: Sequence[str] | str = ("T1",),
    outputs: Sequence[str] | str = ("T2",),
    width: int = 64,
    depth: int = 8,
    norm: str = "batch",
    dropout: float = 0.5,
    dropout_layers: int = 3,
    test_dropout: bool = False,
) -> Pix2PixTranslator:
    """Build a pix2pix generator with random weights.

    Parameters
    ----------
    inputs, outputs : sequence of str
        Input and output modalities, one channel each.
    width : int
        Generator base channels (ngf; 64 = paper; 16 or 8 gives a CPU-sized model).
    depth : int
        Levels of the U-Net (8 = paper's "unet_256"); slices must be multiples of ``2**depth``.
    norm : str
        Normalisation of the generator ("batch" = paper).
    dropout : float
        Dropout probability in the first ``dropout_layers`` decoder levels during training (0.5 = paper).
    dropout_layers : int
        Decoder levels with dropout (3 = paper).
    test_dropout : bool
        Keep dropout on when translating in eval mode (the paper's noise); makes the translator stochastic.

    Weights are drawn from N(0, 0.02) as in the paper.
    """
    inputs = _as_tuple(inputs, "inputs")
    width = _int_arg("width", width)
    depth = _int_arg("depth", depth)
    dropout_layers = _int_arg("dropout_layers", dropout_layers, 0)
    outputs = _as_tuple(outputs, "outputs")
    config = dict(inputs=list(inputs), outputs=list(outputs), width=int(width), depth=int(depth), norm=str(norm),
                  dropout=float(dropout), dropout_layers=int(dropout_layers), test_dropout=bool(test_dropout))
    net = init_normal(Pix2PixUNet(len(inputs), len(outputs), width=int(width), depth=int(depth), norm=norm,
                                  dropout=float(dropout), dropout_layers=int(dropout_layers)))
    stochastic = bool(test_dropout) and float(dropout) > 0
    spec = TranslatorSpec(method="pix2pix", inputs=inputs, outputs=outputs, size_multiple=2 ** int(depth),
                          paired=True, stochastic=stochastic)
    return Pix2PixTranslator(spec, config, net, test_dropout=stochastic)
