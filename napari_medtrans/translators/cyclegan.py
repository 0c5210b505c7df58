"""CycleGAN (Zhu et al., ICCV 2017): two ResNet generators trained on unpaired images with cycle consistency.

The unpaired baseline both DisDiff (Table 1) and HiFi-Syn (Table 1-2) compare against, and the one an unpaired
method must beat. Pieces:

* two generators, ``G_{s->t}`` and ``G_{t->s}`` (:class:`ResnetGenerator`, Johnson et al. 2016 as CycleGAN's
  appendix 7.2 gives it): ``c7s1-w, d2w, d4w, R4w x n_blocks, u2w, uw, c7s1-1``: reflection padding, instance
  norm, ReLU, stride-2 convs down, transposed convs up, tanh output. ``n_blocks`` is 6 for 128x128 images and 9
  for 256x256 in the paper;
* the losses and the two PatchGAN discriminators (70x70, :class:`~napari_medtrans.translators.blocks
  .PatchGANDiscriminator`) belong to the training recipe ``"cyclegan"`` (:mod:`napari_medtrans.training
  .recipe_cyclegan`), as pix2pix's do: least-squares GAN losses, cycle loss ``lambda = 10``, identity loss
  ``0.5 lambda``, a history of 50 translated images for the discriminators, Adam (0.5, 0.999) at 2e-4.

Both generators live in this one translator, keyed by direction and modality name (``gen.T1_to_T2``,
``gen.T2_to_T1``): like DisDiff and HiFi-Syn, one checkpoint translates both ways
(``load_translator(path, direction="T2->T1")``, :class:`~napari_medtrans.translators.disentangle
.TwoWayTranslatorMixin`).

Choices where the paper is open
-------------------------------
* Sizes: ``preset="paper"`` is the paper's (width 64, 9 blocks); ``"cpu"`` (width 16, 6 blocks) trains on a
  CPU. The generator needs sides that are multiples of 4 (two stride-2 convs).
* Weights drawn from N(0, 0.02) as in the paper's code.
* Dropout (``dropout``) in the residual blocks is off, as in the paper.
* ``base="histogram"`` (not in the paper; off by default): each generator outputs a residual over the unpaired
  histogram mapping of its direction (:mod:`.histogram_base`), ``tanh(z + atanh(base(x)))``, with its last
  convolution zeroed so that training starts at the zero-parameter floor. The mapping's quantiles are buffers the
  recipe estimates from the training batches. ``base_order`` says whether the contrasts order the tissues alike
  (``"same"``) or in reverse (``"reversed"``); by default it comes from
  :func:`~napari_medtrans.core.modality.contrast_sign`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..core.errors import UnknownChoiceError
from ..core.modality import contrast_sign
from .base import TranslationOutput, Translator, TranslatorSpec, register_translator
from .blocks import _int_arg, check_batch, init_normal, make_norm
from .disentangle import TwoWayTranslatorMixin, _check_modalities
from .histogram_base import HistogramBase, apply_base

__all__ = ["ResnetGenerator", "CycleGANTranslator", "PRESETS", "BASES", "cyclegan", "generator_key"]

#: Named sizes: "paper" (Zhu et al.: ngf 64, 9 residual blocks), "cpu" (a model that trains on a CPU).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(width=64, n_blocks=9, n_down=2),
    "cpu": dict(width=16, n_blocks=6, n_down=2),
}


#: What a generator's output is built on: nothing (the paper) or the unpaired histogram mapping.
BASES = ("none", "histogram")


#: How the base maps ranks: the contrasts order the brain's tissues alike, or in reverse.
BASE_ORDERS = ("same", "reversed")


def _base_order(source: str, target: str, order: str | None) -> str:
    if order is None:
        sign = contrast_sign(source, target)
        if sign is None:
            raise ValueError(f"no known tissue order relates {source} and {target}, so the histogram base cannot "
                             f"choose a direction: set base_order=same or base_order=reversed")
        return "same" if sign > 0 else "reversed"
    if order not in BASE_ORDERS:
        raise UnknownChoiceError("base_order", str(order), BASE_ORDERS)
    return str(order)


def generator_key(source: str, target: str) -> str:
    """Name of the generator ``source -> target`` in the translator's ``gen`` (``"T1_to_T2"``)."""
    return f"{source}_to_{target}"


class _ResnetBlock(nn.Module):
    """``R``: reflection pad, 3x3 conv, norm, ReLU, (dropout), reflection pad, 3x3 conv, norm; identity shortcut."""

    def __init__(self, channels: int, norm: str, dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), make_norm(norm, channels),
                                   nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), make_norm(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: ``[B, C_in, H, W]`` in [-1, 1] -> ``[B, C_out, H, W]`` in [-1, 1].

    Parameters
    ----------
    in_channels, out_channels : int
        Image channels.
    width : int
        Channels of the first layer (ngf; 64 in the paper).
    n_blocks : int
        Residual blocks at the lowest resolution (6 or 9 in the paper).
    n_down : int
        Stride-2 convolutions down (and transposed ones up); sides must be multiples of ``2**n_down``.
    norm : str
        Normalisation ("instance" in the paper).
    dropout : float
        Dropout in the residual blocks (0 in the paper).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, width: int = 64, n_blocks: int = 9,
                 n_down: int = 2, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7), make_norm(norm, width),
                                   nn.ReLU(True)]
        ch = width
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, 2 * ch, 3, 2, 1), make_norm(norm, 2 * ch), nn.ReLU(True)]
            ch *= 2
        layers += [_ResnetBlock(ch, norm, dropout) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, 2, 1, output_padding=1), make_norm(norm, ch // 2),
                       nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """The translation; with ``base`` (an image in [-1, 1]) the last layer is a residual over it."""
        if base is None:
            return self.net(x)
        return apply_base(self.net[:-1](x), base)  # net[-1] is the tanh


class CycleGANTranslator(TwoWayTranslatorMixin, Translator):
    """CycleGAN: ``source -> target`` by ``G_{source->target}``; the other generator serves the other direction."""

    def __init__(self, spec: TranslatorSpec, config: Mapping[str, Any]):
        super().__init__(spec, config)
        c = self.config
        self.source, self.target = c["source"], c["target"]
        self.gen = nn.ModuleDict({
            generator_key(a, b): init_normal(ResnetGenerator(1, 1, width=c["width"], n_blocks=c["n_blocks"],
                                                             n_down=c["n_down"], norm=c["norm"],
                                                             dropout=c["dropout"]))
            for a, b in ((self.source, self.target), (self.target, self.source))
        })
        self.base = None
        if c.get("base", "none") == "histogram":
            self.base = HistogramBase(self.source, self.target, -1 if c["base_order"] == "reversed" else 1)
            for g in self.gen.values():
                last = [m for m in g.net if isinstance(m, nn.Conv2d)][-1]
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def generator(self, source: str, target: str) -> nn.Module:
        """``G_{source->target}``."""
        key = generator_key(source, target)
        if key not in self.gen:
            raise UnknownChoiceError("CycleGAN generator", key, list(self.gen))
        return self.gen[key]

    def run(self, source: str, target: str, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """``G_{source->target}(x)``, over the histogram base when the translator has one (``base``: its image of
        ``x`` when already computed)."""
        if self.base is not None and base is None:
            base = self.base(x, source)
        return self.generator(source, target)(x, base)

    def translate(self, x: torch.Tensor, *, steps: int | None = None,
                  generator: torch.Generator | None = None) -> TranslationOutput:
        """Translate ``source`` slices ``[B, 1, H, W]`` in [-1, 1]; ``steps`` and ``generator`` are ignored."""
        check_batch(x, 1, self.spec.size_multiple, f"{self.source} slices")
        return TranslationOutput(image=self.run(self.source, self.target, x))

    def forward_train(self, x_s: torch.Tensor, x_t: torch.Tensor, *, identity: bool = True) -> dict[str, torch.Tensor]:
        """One unpaired step's generator passes: ``x_s`` of ``source``, ``x_t`` of ``target``.

        Returns ``fake_t = G_st(x_s)``, ``fake_s = G_ts(x_t)``, the cycles ``rec_s = G_ts(fake_t)`` and
        ``rec_t = G_st(fake_s)``, with ``identity`` also ``idt_t = G_st(x_t)`` and ``idt_s = G_ts(x_s)``, and
        with a histogram base the base images of the translations, ``base_t`` (of ``x_s``) and ``base_s``.
        """
        check_batch(x_s, 1, self.spec.size_multiple, f"{self.source} slices")
        check_batch(x_t, 1, self.spec.size_multiple, f"{self.target} slices")
        s, t = self.source, self.target
        out = {}
        if self.base is not None:  # the base images of the inputs, once (the recipe's anchor reads them too)
            with torch.no_grad():
                out["base_t"], out["base_s"] = self.base(x_s, s), self.base(x_t, t)
        fake_t = self.run(s, t, x_s, out.get("base_t"))
        fake_s = self.run(t, s, x_t, out.get("base_s"))
        out.update(fake_t=fake_t, fake_s=fake_s, rec_s=self.run(t, s, fake_t), rec_t=self.run(s, t, fake_s))
        if identity:
            out["idt_t"], out["idt_s"] = self.run(s, t, x_t), self.run(t, s, x_s)
        return out


@register_translator("cyclegan")
def cyclegan(*, source: str = "T1", target: str = "T2", preset: str | None = None, width: int | None = None,
             n_blocks: int | None = None, n_down: int | None = None, norm: str = "instance",
             dropout: float = 0.0, base: str = "none", base_order: str | None = None) -> CycleGANTranslator:
    """Build CycleGAN's two generators with random weights (N(0, 0.02), as in the paper).

    Parameters
    ----------
    source, target : str
        The translation direction (the translator holds both generators; one checkpoint serves both directions:
        ``load_translator(path, direction="T2->T1")``).
    preset : {"paper", "cpu"} or None
        Size defaults (:data:`PRESETS`); None is "paper". Explicit sizes override it.
    width, n_blocks, n_down : int or None
        Generator sizes (:class:`ResnetGenerator`).
    norm : str
        Normalisation of the generators ("instance" in the paper).
    dropout : float
        Dropout in the residual blocks (0 in the paper).
    base : {"none", "histogram"}
        "histogram": each generator is a residual over the unpaired histogram mapping (module notes; not in the
        paper). "none" is the paper's generator.
    base_order : {"same", "reversed"} or None
        With ``base="histogram"``: whether the contrasts order the brain's tissues alike or in reverse; None takes
        :func:`~napari_medtrans.core.modality.contrast_sign` of the two contrasts.
    """
    if preset is not None and preset not in PRESETS:
        raise UnknownChoiceError("CycleGAN preset", str(preset), list(PRESETS))
    source, target = _check_modalities((source, target))
    cfg = dict(PRESETS[preset or "paper"])
    for key, value in dict(width=width, n_blocks=n_blocks, n_down=n_down).items():
        if value is not None:
            cfg[key] = _int_arg(key, value, 0 if key == "n_blocks" else 1)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f'Argument "dropout" must be in [0, 1), got {dropout!r}.')
    make_norm(norm, 1)  # validates the name
    if base not in BASES:
        raise UnknownChoiceError("CycleGAN base", str(base), BASES)
    cfg.update(source=source, target=target, preset=preset, norm=str(norm), dropout=float(dropout))
    if base != "none":
        cfg.update(base=base, base_order=_base_order(source, target, base_order))
    spec = TranslatorSpec(method="cyclegan", inputs=(source,), outputs=(target,), size_multiple=2 ** cfg["n_down"],
                          paired=False, stochastic=False)
    return CycleGANTranslator(spec, cfg)
