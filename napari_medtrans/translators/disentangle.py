"""A DRIT++-style disentangled translation backbone for two modalities (shared by DisDiff and HiFi-Syn).

DRIT++ (Lee et al. 2018/2020) splits an image of modality ``m`` into a *content* map ``z_c = E_c^m(x)``
(anatomy, shared across modalities) and an *attribute* vector ``z_a = E_a^m(x)`` (the contrast). A generator
``G^m(z_c, z_a)`` draws modality ``m`` from any content and an attribute of ``m``. DisDiff writes this as Eq. 6,
8-9: ``m_{i->j} = G^{m_j}(z_c^{m_i}, z_a^{m_j})`` and ``m_{i->j->i} = G^{m_i}(E_c^{m_j}(m_{i->j}), z_a^{m_i})``.

Pieces (all in :class:`DisentangleNet`):

* content encoders ``E_c^m`` (one per modality): 7x7 conv, ``n_down`` stride-2 convs, ``n_res`` residual blocks,
  instance norm; content is ``[B, width * 2**n_down, H / 2**n_down, W / 2**n_down]``;
* attribute encoders ``E_a^m``: strided convs, global average pooling and a 1x1 conv to ``attr_dim`` numbers;
* generators ``G^m``: the attribute enters the content map (``attr_injection``, below), residual blocks,
  ``n_down`` transposed convs back to full size, 7x7 conv and tanh;
* modality discriminators ``D^m``: the PatchGAN of :mod:`.blocks` (real images of ``m`` against translations);
* the content discriminator ``D_c`` (DisDiff Eq. 7): tells the content of modality ``i`` from that of ``j``; the
  encoders are trained to make it unsure (DRIT++ target 0.5), so the content carries no modality.

Losses (:meth:`DisentangleNet.generator_losses`, :meth:`DisentangleNet.discriminator_losses`): self-reconstruction
``|G^m(E_c^m(x), E_a^m(x)) - x|_1``, cross-cycle ``|m_{i->j->i} - m_i|_1`` (Eq. 6), adversarial terms for both
modality discriminators and the content discriminator, and DRIT++'s KL pull of attributes towards N(0, I) (weight
``lambda_kl``, 0.01 as in DRIT++). Least squares or BCE GAN losses (``gan_mode``; DisDiff Eq. 7 is BCE, the
default).

Choices where the papers are silent
-----------------------------------
* Widths and depths: DRIT++ uses width 64, two downsamplings, four residual blocks and an 8-d attribute. The
  defaults here are that; the small tests use width 8.
* The attribute is deterministic (the mean of DRIT++'s Gaussian); the KL term is applied to it as
  ``0.5 * mean(z_a^2)``, which is the KL of N(z_a, I) to N(0, I).
* Every module and buffer is named by modality (``enc_c.T1``, ``attr_mean_T2``), never by role (source/target),
  so one set of weights serves both directions: :class:`TwoWayTranslatorMixin` rebuilds a translator with
  ``source`` and ``target`` swapped and loads the same state dict. Only the content discriminator's labels
  depend on the order (the first modality is "real", Eq. 7); that matters for training, not for translation.
* **How the attribute enters the generator** (``attr_injection``). ``"concat"`` tiles the attribute over the
  content grid, concatenates it and applies a conv and *instance norm*: the norm subtracts each channel's
  spatial mean, so a spatially constant input (a tiled attribute vector) only survives at the zero-padded
  borders. Measured on the shipped DisDiff model (issue 19): multiplying the attribute by -10 changed the output
  by 0.066 (mean absolute, [-1, 1] units), and self-reconstruction with the image's own attribute was no better
  than with the stored mean; at random initialisation swapping the T1 and T2 attributes changes it by 0.004
  (``tests/translators/test_unpaired_mechanisms.py``). The content then has to carry the contrast, against the
  content discriminator. This
  mode is kept only so that checkpoints written before it was replaced load and translate as before (a config
  without the key, or with None, builds it).

  ``"adain"`` (what the training recipes build) modulates the normalisation instead, as MUNIT's AdaIN and
  StyleGAN's modulated layers do: every conv of the generator at content resolution (the fusing conv and both
  convs of each residual block) is followed by ``IN(h) * (1 + gamma) + beta``, with ``gamma, beta`` a learned
  affine map of the attribute (StyleGAN's "A"; one per layer). The modulation is applied *after* the
  normalisation, so nothing removes it. An attribute map (HiFi-Syn's per-pixel attributes, the memory read)
  gives per-pixel ``gamma, beta`` through the same map as a 1x1 conv (a SPADE-like layer without spatial mixing,
  so a pixel's appearance comes from its own attribute). The upsampling layers keep their layer norm, as in
  MUNIT's decoder. Why AdaIN rather than DRIT++'s concat generator with layer norm: a layer norm keeps a
  constant channel only through its coupling with the other channels' statistics, a weak and indirect path;
  AdaIN acts on every feature map by construction and serves vectors (DisDiff) and per-pixel maps (HiFi-Syn)
  alike.

  Before the affine map the attribute is scaled to unit root-mean-square over its channels (per vector, or per
  pixel of a map), as StyleGAN normalises its latent before the mapping network. The generator then responds to
  the attribute's direction, not its length: the attribute encoder's output is unconstrained (HiFi-Syn's raw
  maps grew to a mean absolute 13.6 in training) while the memory bank stores unit vectors (HiFi-Syn Eq. 5) and
  reads convex combinations of them; with the scaling, self-reconstruction, the cycle and the memory read all
  reach the generator on one scale. A zero attribute stays zero (``gamma, beta`` are then the biases).
* **Extra negatives for the modality discriminators** (``other_negatives``, off unless set). ``D^m`` can also be
  trained to call real images of the *other* modality fake, as StarGAN's domain classifier tells domains apart,
  so that a translation that still looks like its source is rejected from the first steps. Measured on the
  benchmark phantom it did not settle which way the contrast runs (issue 19; see
  :mod:`napari_medtrans.training.contrast_prior`, which does), so the recipes leave it off; it stays for
  experiments. ``gan_mode`` (BCE as in DisDiff Eq. 7, or least squares) is a config key of both methods for the
  same reason.
* A running mean of each modality's attribute is kept in buffers (``attr_mean_<m>``, momentum 0.01 per
  training batch) so that inference needs no image of the target modality (DisDiff's inference uses the target
  attribute; this stored mean is the default, a reference image overrides it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UnknownChoiceError
from .blocks import ConvNormAct, PatchGANDiscriminator, check_batch

__all__ = [
    "GAN_MODES",
    "ATTR_INJECTIONS",
    "AdaptiveNorm",
    "unit_rms",
    "ResBlock",
    "ContentEncoder",
    "AttributeEncoder",
    "DisentangledGenerator",
    "ContentDiscriminator",
    "DisentangleNet",
    "TwoWayTranslatorMixin",
    "gan_loss",
]

GAN_MODES = ("bce", "lsgan")
#: How the attribute enters the generator: "concat" (inert, kept for old checkpoints) or "adain" (see above).
ATTR_INJECTIONS = ("concat", "adain")


def gan_loss(logits: torch.Tensor, target: float, mode: str = "bce") -> torch.Tensor:
    """Adversarial loss of discriminator ``logits`` against a constant ``target`` (1 real, 0 fake, 0.5 unsure).

    ``"bce"`` is ``-[y log sigmoid(l) + (1 - y) log(1 - sigmoid(l))]`` (DisDiff Eq. 4, 5, 7); ``"lsgan"`` is
    ``(l - y)^2``.
    """
    if mode == "bce":
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))
    if mode == "lsgan":
        return F.mse_loss(logits, torch.full_like(logits, float(target)))
    raise UnknownChoiceError("GAN loss", str(mode), GAN_MODES)


class ResBlock(nn.Module):
    """Two 3x3 conv-instance-norm layers with an identity shortcut (ReLU after the first)."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, norm=norm, act="relu"),
            ConvNormAct(channels, channels, 3, norm=norm, act="none"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ContentEncoder(nn.Module):
    """``E_c``: image ``[B, C, H, W]`` -> content map ``[B, width * 2**n_down, H / 2**n_down, W / 2**n_down]``."""

    def __init__(self, in_channels: int = 1, *, width: int = 64, n_down: int = 2, n_res: int = 4):
        super().__init__()
        layers: list[nn.Module] = [ConvNormAct(in_channels, width, 7, norm="instance", act="leakyrelu")]
        ch = width
        for _ in range(n_down):
            layers.append(ConvNormAct(ch, ch * 2, 4, 2, 1, norm="instance", act="leakyrelu"))
            ch *= 2
        layers += [ResBlock(ch) for _ in range(n_res)]
        self.net = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AttributeEncoder(nn.Module):
    """``E_a``: image ``[B, C, H, W]`` -> attribute ``[B, attr_dim]`` (no normalisation, as in DRIT++).

    With ``spatial=True`` there is no global pooling: the output is an attribute map ``[B, attr_dim, H / 2**n_down,
    W / 2**n_down]`` on the content grid (per-pixel attributes, as HiFi-Syn's memory bank stores them).
    """

    def __init__(self, in_channels: int = 1, *, width: int = 64, attr_dim: int = 8, n_down: int = 4,
                 spatial: bool = False):
        super().__init__()
        layers: list[nn.Module] = [ConvNormAct(in_channels, width, 7, norm="none", act="relu")]
        ch = width
        for i in range(n_down):
            nxt = width * min(2 ** (i + 1), 4)
            layers.append(ConvNormAct(ch, nxt, 4, 2, 1, norm="none", act="relu"))
            ch = nxt
        tail = [nn.Conv2d(ch, attr_dim, 1)] if spatial else [nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, attr_dim, 1)]
        self.net = nn.Sequential(*layers, *tail)
        self.attr_dim = int(attr_dim)
        self.spatial = bool(spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out if self.spatial else out.flatten(1)


def unit_rms(attr: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``attr`` (``[B, A]`` or ``[B, A, h, w]``) scaled to unit root-mean-square over its channels (dim 1)."""
    return attr * torch.rsqrt(attr.pow(2).mean(dim=1, keepdim=True) + eps)


class AdaptiveNorm(nn.Module):
    """``IN(h) * (1 + gamma) + beta`` with ``[gamma, beta]`` an affine map of the attribute (AdaIN, MUNIT).

    ``attr`` is ``[B, A]`` (one scale and shift per channel) or ``[B, A, h, w]`` on ``h``'s grid (per pixel).
    """

    def __init__(self, channels: int, attr_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
        self.affine = nn.Conv2d(attr_dim, 2 * channels, 1)

    def forward(self, h: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        a = attr[:, :, None, None] if attr.ndim == 2 else attr
        gamma, beta = self.affine(a.to(h.dtype)).chunk(2, dim=1)
        return self.norm(h) * (1 + gamma) + beta


class _ModulatedResBlock(nn.Module):
    """:class:`ResBlock` with :class:`AdaptiveNorm` in place of both instance norms."""

    def __init__(self, channels: int, attr_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = AdaptiveNorm(channels, attr_dim)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = AdaptiveNorm(channels, attr_dim)

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x), attr))
        return x + self.norm2(self.conv2(h), attr)


class DisentangledGenerator(nn.Module):
    """``G``: content ``[B, Cc, h, w]`` + attribute ``[B, A]`` -> image ``[B, C, h * 2**n_down, w * 2**n_down]``.

    ``injection`` is ``"concat"`` (the attribute tiled and concatenated before an instance-normalised conv) or
    ``"adain"`` (every conv at content resolution followed by :class:`AdaptiveNorm`); see the module notes.
    """

    def __init__(self, content_channels: int, attr_dim: int, out_channels: int = 1, *, n_down: int = 2,
                 n_res: int = 4, injection: str = "concat"):
        super().__init__()
        if injection not in ATTR_INJECTIONS:
            raise UnknownChoiceError("attribute injection", str(injection), ATTR_INJECTIONS)
        self.injection = injection
        ch = int(content_channels)
        if injection == "concat":
            self.fuse = ConvNormAct(ch + attr_dim, ch, 3, norm="instance", act="relu")
            self.res = nn.Sequential(*(ResBlock(ch) for _ in range(n_res)))
        else:
            self.fuse_conv = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
            self.fuse_norm = AdaptiveNorm(ch, attr_dim)
            self.res = nn.ModuleList(_ModulatedResBlock(ch, attr_dim) for _ in range(n_res))
        ups: list[nn.Module] = []
        for _ in range(n_down):
            ups.append(ConvNormAct(ch, ch // 2, 4, 2, 1, norm="layer", act="relu", transposed=True))
            ch //= 2
        self.ups = nn.Sequential(*ups)
        self.head = nn.Sequential(nn.Conv2d(ch, out_channels, 7, padding=3), nn.Tanh())

    def forward(self, content: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        """``attr`` is a vector ``[B, A]`` (tiled over the content grid) or a map ``[B, A, h, w]``."""
        if attr.ndim == 4 and tuple(attr.shape[-2:]) != tuple(content.shape[-2:]):
            attr = F.interpolate(attr, size=content.shape[-2:], mode="bilinear", align_corners=False)
        if self.injection == "adain":
            a = unit_rms(attr.to(content.dtype))
            h = F.relu(self.fuse_norm(self.fuse_conv(content), a))
            for block in self.res:
                h = block(h, a)
            return self.head(self.ups(h))
        if attr.ndim == 2:
            tiled = attr[:, :, None, None].expand(-1, -1, content.shape[2], content.shape[3])
        else:
            tiled = attr
        h = self.fuse(torch.cat([content, tiled.to(content.dtype)], dim=1))
        return self.head(self.ups(self.res(h)))


class ContentDiscriminator(nn.Module):
    """``D_c`` (DisDiff Eq. 7): content map -> one logit per image, high for modality ``i``, low for ``j``."""

    def __init__(self, content_channels: int, *, width: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        ch = int(content_channels)
        for _ in range(n_layers):
            layers.append(ConvNormAct(ch, width, 3, 1, 1, norm="instance", act="leakyrelu"))
            ch = width
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, 1, 1))

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.net(content).flatten(1)


def _check_modalities(modalities: Sequence[str]) -> tuple[str, str]:
    mods = tuple(str(m) for m in modalities)
    if len(mods) != 2 or mods[0] == mods[1]:
        raise ValueError(f'Argument "modalities" must name two different modalities, got {list(modalities)!r}.')
    for m in mods:
        if not m or "." in m or not m.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f'Modality name {m!r} must be a non-empty word (letters, digits, "_" or "-").')
    return mods  # type: ignore[return-value]


class DisentangleNet(nn.Module):
    """Content/attribute encoders, generators and discriminators for two modalities (DRIT++).

    Parameters
    ----------
    modalities : sequence of two str
        The two modalities, e.g. ("T1", "T2"); the content discriminator calls the first "real" (Eq. 7).
    channels : int
        Image channels per modality.
    width : int
        Feature maps of the first encoder layer (64 in DRIT++).
    n_down : int
        Downsamplings of the content encoder; image sides must be multiples of ``2**n_down``.
    n_res : int
        Residual blocks in content encoder and generator.
    attr_dim : int
        Attribute size (8 in DRIT++).
    disc_width, disc_layers : int
        PatchGAN width and stride-2 layers for the modality discriminators.
    gan_mode : {"bce", "lsgan"}
        Adversarial loss.
    attr_momentum : float
        Momentum of the stored mean attribute per modality.
    attr_spatial : bool
        Attribute encoders return maps on the content grid instead of vectors (HiFi-Syn).
    attr_injection : {"concat", "adain"}
        How generators take the attribute (see the module notes); "concat" only for old checkpoints.
    other_negatives : bool
        Each modality discriminator also learns real images of the *other* modality as "fake" (see the module
        notes); training only.
    """

    def __init__(self, modalities: Sequence[str] = ("T1", "T2"), *, channels: int = 1, width: int = 64,
                 n_down: int = 2, n_res: int = 4, attr_dim: int = 8, disc_width: int = 64, disc_layers: int = 3,
                 gan_mode: str = "bce", attr_momentum: float = 0.01,
                 attr_spatial: bool = False, attr_injection: str = "concat", other_negatives: bool = False):
        super().__init__()
        self.modalities = _check_modalities(modalities)
        if gan_mode not in GAN_MODES:
            raise UnknownChoiceError("GAN loss", str(gan_mode), GAN_MODES)
        for name, v in (("channels", channels), ("width", width), ("attr_dim", attr_dim),
                        ("disc_width", disc_width), ("disc_layers", disc_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f'Argument "{name}" must be a positive integer, got {v!r}.')
        if isinstance(n_down, bool) or not isinstance(n_down, int) or n_down < 1:
            raise ValueError(f'Argument "n_down" must be a positive integer, got {n_down!r}.')
        self.channels = int(channels)
        self.n_down = int(n_down)
        self.gan_mode = gan_mode
        self.other_negatives = bool(other_negatives)
        self.attr_momentum = float(attr_momentum)
        self.enc_c = nn.ModuleDict({m: ContentEncoder(channels, width=width, n_down=n_down, n_res=n_res)
                                    for m in self.modalities})
        cc = self.enc_c[self.modalities[0]].out_channels
        self.content_channels = cc
        self.enc_a = nn.ModuleDict({m: AttributeEncoder(channels, width=width, attr_dim=attr_dim,
                                                     n_down=n_down if attr_spatial else 4, spatial=attr_spatial)
                                    for m in self.modalities})
        self.attr_injection = str(attr_injection)
        self.gen = nn.ModuleDict({m: DisentangledGenerator(cc, attr_dim, channels, n_down=n_down, n_res=n_res,
                                                           injection=self.attr_injection)
                                  for m in self.modalities})
        self.dis = nn.ModuleDict({m: PatchGANDiscriminator(channels, width=disc_width, n_layers=disc_layers)
                                  for m in self.modalities})
        self.dis_c = ContentDiscriminator(cc, width=disc_width)
        self.attr_dim = int(attr_dim)
        for m in self.modalities:
            self.register_buffer(f"attr_mean_{m}", torch.zeros(attr_dim))

    # -- parts ------------------------------------------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        return 2**self.n_down

    def other(self, modality: str) -> str:
        """The other modality of the pair."""
        self._check_mod(modality)
        return self.modalities[1] if modality == self.modalities[0] else self.modalities[0]

    def _check_mod(self, modality: str) -> None:
        if modality not in self.modalities:
            raise UnknownChoiceError("modality", str(modality), self.modalities)

    def encode(self, x: torch.Tensor, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_c, z_a)`` of images ``x`` of ``modality`` (DisDiff Eq. 8)."""
        self._check_mod(modality)
        check_batch(x, self.channels, self.size_multiple, f"{modality} images")
        return self.enc_c[modality](x), self.enc_a[modality](x)

    def decode(self, content: torch.Tensor, attr: torch.Tensor, modality: str) -> torch.Tensor:
        """``G^m(z_c, z_a)``: an image of ``modality`` in [-1, 1]."""
        self._check_mod(modality)
        return self.gen[modality](content, attr)

    def mean_attribute(self, modality: str, batch: int = 1) -> torch.Tensor:
        """The stored running mean attribute of ``modality``, repeated ``[batch, attr_dim]``."""
        self._check_mod(modality)
        return getattr(self, f"attr_mean_{modality}").unsqueeze(0).expand(batch, -1)

    @torch.no_grad()
    def update_mean_attribute(self, attr: torch.Tensor, modality: str) -> None:
        """Move the stored mean attribute of ``modality`` towards the batch mean of ``attr`` (momentum)."""
        self._check_mod(modality)
        buf = getattr(self, f"attr_mean_{modality}")
        mean = attr.detach().float().transpose(0, 1).reshape(attr.shape[1], -1).mean(1)
        buf.mul_(1 - self.attr_momentum).add_(self.attr_momentum * mean.to(buf.dtype))

    def translate(self, x: torch.Tensor, source: str, target: str, *,
                  reference: torch.Tensor | None = None) -> torch.Tensor:
        """``G^{target}(E_c^{source}(x), z_a)``.

        ``z_a`` comes from ``reference`` images of ``target`` when given, else it is the stored mean attribute.
        """
        self._check_mod(target)
        content, _ = self.encode(x, source)
        if reference is not None:
            attr = self.enc_a[target](reference)
            if attr.shape[0] == 1 and x.shape[0] > 1:
                attr = attr.expand(x.shape[0], -1)
        else:
            attr = self.mean_attribute(target, x.shape[0])
        return self.decode(content, attr, target)

    # -- training ---------------------------------------------------------------------------------------
    def forward_pair(self, x_i: torch.Tensor, x_j: torch.Tensor, *,
                     cross_attr: Callable[[torch.Tensor, str], torch.Tensor] | None = None,
                     cycle_attr: Callable[[torch.Tensor, str], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Everything one unpaired training step needs, for ``x_i`` of modality i and ``x_j`` of modality j.

        ``cross_attr(content, target)`` supplies the attribute for a translation into ``target`` (HiFi-Syn reads its
        memory bank here); by default the translation takes the attribute of the other input (DRIT++ swap).
        ``cycle_attr(content, modality)`` likewise supplies the attribute of the second translation, back into the
        input's modality; by default it is the input's own attribute (DRIT++).

        Returns a dict with ``zc_i, za_i, zc_j, za_j`` (Eq. 8), ``fake_j = G^j(zc_i, za_j)`` and
        ``fake_i = G^i(zc_j, za_i)`` (Eq. 9), self-reconstructions ``rec_i, rec_j`` and the cross-cycle
        reconstructions ``cyc_i = G^i(E_c^j(fake_j), za_i)``, ``cyc_j`` (Eq. 6), the contents of the
        translations ``zc_fj = E_c^j(fake_j)``, ``zc_fi``, plus the inputs ``x_i, x_j``.
        While training, the stored mean attributes are updated.
        """
        mi, mj = self.modalities
        zc_i, za_i = self.encode(x_i, mi)
        zc_j, za_j = self.encode(x_j, mj)
        fake_j = self.decode(zc_i, za_j if cross_attr is None else cross_attr(zc_i, mj), mj)
        fake_i = self.decode(zc_j, za_i if cross_attr is None else cross_attr(zc_j, mi), mi)
        rec_i = self.decode(zc_i, za_i, mi)
        rec_j = self.decode(zc_j, za_j, mj)
        zc_fj = self.enc_c[mj](fake_j)
        zc_fi = self.enc_c[mi](fake_i)
        cyc_i = self.decode(zc_fj, za_i if cycle_attr is None else cycle_attr(zc_fj, mi), mi)
        cyc_j = self.decode(zc_fi, za_j if cycle_attr is None else cycle_attr(zc_fi, mj), mj)
        if self.training:
            self.update_mean_attribute(za_i, mi)
            self.update_mean_attribute(za_j, mj)
        return dict(x_i=x_i, x_j=x_j, zc_i=zc_i, za_i=za_i, zc_j=zc_j, za_j=za_j, fake_i=fake_i, fake_j=fake_j,
                    zc_fi=zc_fi, zc_fj=zc_fj, rec_i=rec_i, rec_j=rec_j, cyc_i=cyc_i, cyc_j=cyc_j)

    def content_loss_d(self, zc_i: torch.Tensor, zc_j: torch.Tensor) -> torch.Tensor:
        """DisDiff Eq. 7 for ``D_c``: content of modality i is "1", of modality j "0" (encoders detached)."""
        return gan_loss(self.dis_c(zc_i.detach()), 1.0, self.gan_mode) + \
            gan_loss(self.dis_c(zc_j.detach()), 0.0, self.gan_mode)

    def content_loss_g(self, zc_i: torch.Tensor, zc_j: torch.Tensor) -> torch.Tensor:
        """Encoders against ``D_c`` (DRIT++): both contents should leave it at 0.5."""
        return gan_loss(self.dis_c(zc_i), 0.5, self.gan_mode) + gan_loss(self.dis_c(zc_j), 0.5, self.gan_mode)

    def generator_losses(self, out: Mapping[str, torch.Tensor], *, lambda_rec: float = 10.0,
                         lambda_cyc: float = 10.0, lambda_adv: float = 1.0, lambda_content: float = 1.0,
                         lambda_kl: float = 0.01) -> dict[str, torch.Tensor]:
        """Encoder/generator losses from :meth:`forward_pair`'s output; ``"total"`` is the weighted sum.

        ``rec`` self-reconstruction L1, ``cyc`` cross-cycle L1 (Eq. 6), ``adv`` fool both modality
        discriminators, ``content`` fool ``D_c`` (Eq. 7), ``kl`` attribute prior. A weight of 0 switches a
        term off (ablations).
        """
        mi, mj = self.modalities
        x_i, x_j = out["x_i"], out["x_j"]
        losses = {
            "rec": F.l1_loss(out["rec_i"], x_i) + F.l1_loss(out["rec_j"], x_j),
            "cyc": F.l1_loss(out["cyc_i"], x_i) + F.l1_loss(out["cyc_j"], x_j),
            "adv": gan_loss(self.dis[mj](out["fake_j"]), 1.0, self.gan_mode)
            + gan_loss(self.dis[mi](out["fake_i"]), 1.0, self.gan_mode),
            "content": self.content_loss_g(out["zc_i"], out["zc_j"]) if lambda_content else x_i.new_zeros(()),
            "kl": 0.5 * (out["za_i"].pow(2).mean() + out["za_j"].pow(2).mean()),
        }
        losses["total"] = (lambda_rec * losses["rec"] + lambda_cyc * losses["cyc"] + lambda_adv * losses["adv"]
                           + lambda_content * losses["content"] + lambda_kl * losses["kl"])
        return losses

    def discriminator_losses(self, out: Mapping[str, torch.Tensor], *, use_content: bool = True
                             ) -> dict[str, torch.Tensor]:
        """Discriminator losses: real images of each modality "1", translations "0"; ``D_c`` by Eq. 7.

        With :attr:`other_negatives`, real images of the other modality are "0" for ``D^m`` too.
        """
        mi, mj = self.modalities
        mode = self.gan_mode
        dis = sum(
            gan_loss(self.dis[m](out[f"x_{s}"]), 1.0, mode) + gan_loss(self.dis[m](out[f"fake_{s}"].detach()), 0.0, mode)
            + (gan_loss(self.dis[m](out[f"x_{o}"]), 0.0, mode) if self.other_negatives else 0.0)
            for s, o, m in (("i", "j", mi), ("j", "i", mj))
        )
        losses = {"dis": dis}
        losses["content"] = self.content_loss_d(out["zc_i"], out["zc_j"]) if use_content else dis.new_zeros(())
        losses["total"] = losses["dis"] + losses["content"]
        return losses

    def generator_parameters(self) -> list[nn.Parameter]:
        """Parameters of encoders and generators (the "G" optimiser)."""
        return [p for part in (self.enc_c, self.enc_a, self.gen) for p in part.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Parameters of the modality and content discriminators (the "D" optimiser)."""
        return [*self.dis.parameters(), *self.dis_c.parameters()]


class TwoWayTranslatorMixin:
    """For translators on :class:`DisentangleNet` whose config names ``source`` and ``target``.

    The backbone holds both modalities and its parameters and buffers are keyed by modality, so the translator
    built with ``source`` and ``target`` swapped takes the same state dict: one checkpoint translates both ways.
    """

    #: One set of weights translates both ways between the two modalities.
    bidirectional = True

    def settle(self, choices: Mapping[str, object]) -> dict:
        """Give every key of ``choices`` that :attr:`config` leaves unset (None) its value in ``choices``.

        Mechanism keys default to None, which builds what checkpoints written before the key existed hold (so they
        load and translate as before); a training recipe settles them to what it trains. The parts are rebuilt from
        the new config with fresh random weights (``_build_parts``), and the spec follows the config. Keys the
        config sets (also explicitly to the old value, for an ablation) are kept. Returns the keys it set.
        """
        unset = {k: v for k, v in choices.items() if self.config.get(k) is None}
        if not unset:
            return {}
        from .base import meta_device, translator_factory

        with meta_device():  # validates the new config and computes its spec without allocating weights
            template = translator_factory(self.spec.method)(**{**self.config, **unset})
        self.spec, self.config = template.spec, dict(template.config)
        training = self.training
        self._build_parts()
        self.train(training)
        return unset

    def directions(self) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """``[(inputs, outputs), ...]`` this translator's weights serve: its own direction first."""
        s, t = str(self.config["source"]), str(self.config["target"])
        return [((s,), (t,)), ((t,), (s,))]

    def for_direction(self, source: str, target: str):
        """This translator for ``source -> target``: itself, or a copy built with the modalities swapped.

        The copy gets a copy of every parameter and buffer (same device and dtype) and the same train/eval mode.

        Raises
        ------
        UnknownChoiceError
            When ``source -> target`` is not one of :meth:`directions`.
        """
        own = (str(self.config["source"]), str(self.config["target"]))
        if (source, target) == own:
            return self
        if (target, source) != own:
            offered = [f"{i[0]}->{o[0]}" for i, o in self.directions()]
            raise UnknownChoiceError("translation direction", f"{source}->{target}", offered)
        from .base import create_translator

        twin = create_translator(self.spec.method, **{**self.config, "source": source, "target": target})
        twin.load_state_dict(self.state_dict(), strict=True)  # keys are by modality: the same set both ways
        ref = next(iter(self.parameters()), None)
        if ref is not None:
            twin.to(device=ref.device, dtype=ref.dtype)
        twin.train(self.training)
        return twin
