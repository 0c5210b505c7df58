"""Network pieces shared by the translators: conv-norm-act blocks, U-Net generators, the PatchGAN discriminator.

Activations and normalisations are chosen by name (the habit of MONAI's ``layers/factories``):
``make_act("leakyrelu")``, ``make_norm("instance", 64)``. Unknown names raise
:class:`~napari_medtrans.core.errors.UnknownChoiceError` with the valid names and a suggestion.

Two generators live here:

* :class:`Pix2PixUNet`: the generator of Isola et al. 2017 ("unet_256" for ``depth=8``): one 4x4 stride-2
  convolution per level, pre-activation order (LeakyReLU 0.2 on the way down, ReLU on the way up), no norm on the
  outermost encoder layer or on the innermost (bottleneck) encoder layer, dropout in the first three decoder
  layers, tanh output.
* :class:`UNet`: the classic U-Net (Ronneberger et al. 2015): ``convs`` 3x3 conv-norm-act blocks per level,
  strided-conv or max-pool downsampling, transposed-conv upsampling, skip concatenation, 1x1 conv + tanh head.

Both map ``[B, C_in, H, W]`` to ``[B, C_out, H, W]`` in [-1, 1]; H and W must be multiples of ``2**depth``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..core.errors import UnknownChoiceError

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "make_act",
    "make_norm",
    "level_channels",
    "ConvNormAct",
    "UNetDown",
    "UNetUp",
    "Pix2PixUNet",
    "UNet",
    "PatchGANDiscriminator",
    "patchgan_receptive_field",
    "check_batch",
    "init_normal",
]

ACTIVATIONS = ("relu", "leakyrelu", "gelu", "silu", "elu", "prelu", "tanh", "sigmoid", "none")
NORMS = ("batch", "instance", "group", "layer", "none")


def make_act(name: str | None, *, negative_slope: float = 0.2) -> nn.Module:
    """An activation module by name (``"leakyrelu"`` uses ``negative_slope``, 0.2 as in pix2pix)."""
    key = "none" if name is None else str(name).lower().replace("_", "")
    if key == "leakyrelu":
        return nn.LeakyReLU(negative_slope, inplace=False)
    table = {
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "elu": nn.ELU,
        "prelu": nn.PReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "none": nn.Identity,
        "identity": nn.Identity,
    }
    if key not in table:
        raise UnknownChoiceError("activation", str(name), ACTIVATIONS)
    return table[key]()


def make_norm(name: str | None, channels: int) -> nn.Module:
    """A 2D normalisation layer by name for ``channels`` feature maps.

    ``"instance"`` is affine and keeps no running statistics (it normalises each image on its own, which is
    what batch norm does at pix2pix's batch size of 1); ``"group"`` uses up to 32 groups; ``"layer"`` is
    GroupNorm with one group.
    """
    key = "none" if name is None else str(name).lower()
    if key == "batch":
        return nn.BatchNorm2d(channels)
    if key == "instance":
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if key == "group":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if key == "layer":
        return nn.GroupNorm(1, channels)
    if key in ("none", "identity"):
        return nn.Identity()
    raise UnknownChoiceError("normalisation", str(name), NORMS)


def level_channels(width: int, depth: int, max_mult: int) -> list[int]:
    """Feature channels per U-Net level: ``width * min(2**i, max_mult)`` for ``i`` in ``range(depth)``."""
    return [int(width) * min(2**i, int(max_mult)) for i in range(int(depth))]


class ConvNormAct(nn.Sequential):
    """Convolution, normalisation, activation (and dropout), in that order or pre-activated.

    Parameters
    ----------
    in_channels, out_channels : int
        Feature maps in and out.
    kernel_size, stride, padding : int
        Convolution geometry; ``padding=None`` keeps the size for odd kernels (``kernel_size // 2``).
    norm, act : str
        Names for :func:`make_norm` and :func:`make_act`.
    dropout : float
        Dropout probability after the activation (0 for none).
    transposed : bool
        Use a transposed convolution (upsampling).
    preact : bool
        Order act -> conv -> norm -> dropout (pix2pix's skip blocks) instead of conv -> norm -> act -> dropout.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        *,
        norm: str = "instance",
        act: str = "leakyrelu",
        dropout: float = 0.0,
        transposed: bool = False,
        preact: bool = False,
    ):
        if padding is None:
            padding = kernel_size // 2
        conv_type = nn.ConvTranspose2d if transposed else nn.Conv2d
        norm_layer = make_norm(norm, out_channels)
        # A bias right before a normalisation that subtracts the mean is wasted.
        conv = conv_type(
            in_channels, out_channels, kernel_size, stride, padding, bias=isinstance(norm_layer, nn.Identity)
        )
        layers = [make_act(act), conv, norm_layer] if preact else [conv, norm_layer, make_act(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*(m for m in layers if not isinstance(m, nn.Identity)))


class UNetDown(nn.Sequential):
    """One encoder level of :class:`UNet`: halve the size (strided conv or max-pool), then ``convs`` blocks."""

    def __init__(self, in_channels: int, out_channels: int, *, convs: int = 2, norm: str, act: str,
                 pool: str = "conv", dropout: float = 0.0):
        if pool == "conv":
            layers: list[nn.Module] = [ConvNormAct(in_channels, out_channels, 4, 2, 1, norm=norm, act=act)]
        elif pool == "max":
            layers = [nn.MaxPool2d(2), ConvNormAct(in_channels, out_channels, norm=norm, act=act)]
        else:
            raise UnknownChoiceError("downsampling", pool, ("conv", "max"))
        layers += [
            ConvNormAct(out_channels, out_channels, norm=norm, act=act, dropout=dropout)
            for _ in range(max(int(convs) - 1, 0))
        ]
        super().__init__(*layers)


class UNetUp(nn.Module):
    """One decoder level of :class:`UNet`: double the size, concatenate the skip, then ``convs`` blocks."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *, convs: int = 2, norm: str,
                 act: str, dropout: float = 0.0):
        super().__init__()
        self.up = ConvNormAct(in_channels, out_channels, 4, 2, 1, norm=norm, act=act, transposed=True)
        self.convs = nn.Sequential(
            *(
                ConvNormAct(out_channels + skip_channels if i == 0 else out_channels, out_channels,
                            norm=norm, act=act, dropout=dropout)
                for i in range(max(int(convs), 1))
            )
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


def _check_geometry(in_channels: int, out_channels: int, width: int, depth: int) -> None:
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'Argument "{name}" must be a positive integer, got {value!r}.')
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f'Argument "depth" must be a positive integer, got {depth!r}.')


class UNet(nn.Module):
    """Classic U-Net for image regression, output in [-1, 1].

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output images' channels (one per modality).
    width : int
        Feature maps at full resolution (64 in Ronneberger et al.; 8-16 gives a CPU-sized model).
    depth : int
        Number of downsamplings; inputs must be multiples of ``2**depth``.
    convs : int
        3x3 conv-norm-act blocks per level.
    norm, act : str
        Normalisation and activation names.
    dropout : float
        Dropout after the blocks of the two innermost levels (0 for none).
    pool : {"conv", "max"}
        Downsampling by a 4x4 stride-2 convolution or by 2x2 max-pooling.
    max_mult : int
        Channel multiplier cap: level ``i`` has ``width * min(2**i, max_mult)`` channels.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, width: int = 64, depth: int = 4,
                 convs: int = 2, norm: str = "batch", act: str = "leakyrelu", dropout: float = 0.0,
                 pool: str = "conv", max_mult: int = 16):
        super().__init__()
        _check_geometry(in_channels, out_channels, width, depth)
        ch = level_channels(width, depth + 1, max_mult)
        self.stem = nn.Sequential(
            *(ConvNormAct(in_channels if i == 0 else ch[0], ch[0], norm=norm, act=act) for i in range(max(convs, 1)))
        )
        self.downs = nn.ModuleList(
            UNetDown(ch[i], ch[i + 1], convs=convs, norm=norm, act=act, pool=pool,
                     dropout=dropout if i >= depth - 2 else 0.0)
            for i in range(depth)
        )
        self.ups = nn.ModuleList(
            UNetUp(ch[i + 1], ch[i], ch[i], convs=convs, norm=norm, act=act,
                   dropout=dropout if i >= depth - 2 else 0.0)
            for i in reversed(range(depth))
        )
        self.head = nn.Sequential(nn.Conv2d(ch[0], out_channels, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.ups:
            h = up(h, skips.pop())
        return self.head(h)


class Pix2PixUNet(nn.Module):
    """The pix2pix U-Net generator (Isola et al. 2017, appendix 6.1.1), output in [-1, 1].

    ``depth=8`` with ``width=64`` is the paper's encoder C64-C128-C256-C512-C512-C512-C512-C512 for 256x256
    images. Each encoder level is a 4x4 stride-2 convolution (LeakyReLU 0.2 before it, norm after it; no norm on
    the first and on the bottleneck layer); each decoder level is ReLU, 4x4 stride-2 transposed convolution,
    norm and (for the first ``dropout_layers`` decoder levels) dropout, then concatenation with the mirrored
    encoder output. The last decoder level maps to ``out_channels`` with tanh.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of input and output images.
    width : int
        Channels of the first encoder level (ngf; 64 in the paper).
    depth : int
        Number of levels (8 in the paper); inputs must be multiples of ``2**depth``.
    norm : str
        Normalisation name ("batch" in the paper, "instance" behaves like the paper's batch size of 1).
    dropout : float
        Dropout probability of the first decoder levels (0.5 in the paper; 0 turns it off).
    dropout_layers : int
        How many decoder levels (innermost first, never the output layer) carry dropout (3 in the paper).
    max_mult : int
        Channel multiplier cap (8 in the paper: at most 512 channels for ngf=64).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, width: int = 64, depth: int = 8,
                 norm: str = "batch", dropout: float = 0.5, dropout_layers: int = 3, max_mult: int = 8):
        super().__init__()
        _check_geometry(in_channels, out_channels, width, depth)
        ch = level_channels(width, depth, max_mult)
        downs: list[nn.Module] = [nn.Conv2d(in_channels, ch[0], 4, 2, 1)]
        for i in range(1, depth):
            downs.append(
                ConvNormAct(ch[i - 1], ch[i], 4, 2, 1, norm="none" if i == depth - 1 else norm,
                            act="leakyrelu", preact=True)
            )
        self.downs = nn.ModuleList(downs)
        ups: list[nn.Module] = []
        for i in reversed(range(1, depth)):
            n_in = ch[i] if i == depth - 1 else 2 * ch[i]
            first_levels = depth - 1 - i < int(dropout_layers)
            ups.append(
                ConvNormAct(n_in, ch[i - 1], 4, 2, 1, norm=norm, act="relu", transposed=True, preact=True,
                            dropout=float(dropout) if first_levels else 0.0)
            )
        n_in = ch[0] if depth == 1 else 2 * ch[0]
        ups.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(n_in, out_channels, 4, 2, 1), nn.Tanh()))
        self.ups = nn.ModuleList(ups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = skips.pop()
        for up in self.ups[:-1]:
            h = torch.cat([up(h), skips.pop()], dim=1)
        return self.ups[-1](h)


class PatchGANDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017): one real/fake logit per overlapping image patch.

    ``n_layers=3`` is the paper's 70x70 discriminator C64-C128-C256-C512: 4x4 convolutions, stride 2 except the
    last two, LeakyReLU 0.2, no norm on the first layer, and a final 4x4 convolution to one channel (logits; the
    loss applies the sigmoid or the least-squares target). :func:`patchgan_receptive_field` gives the patch size
    for other ``n_layers`` (1 -> 16, 2 -> 34, 3 -> 70, 4 -> 142).

    Parameters
    ----------
    in_channels : int
        Channels seen by the discriminator: a conditional GAN feeds the input and the (real or synthetic) output
        concatenated, ``C_in + C_out``.
    width : int
        Channels of the first layer (ndf; 64 in the paper).
    n_layers : int
        Number of stride-2 layers.
    norm : str
        Normalisation name.
    """

    def __init__(self, in_channels: int = 2, *, width: int = 64, n_layers: int = 3, norm: str = "instance",
                 max_mult: int = 8):
        super().__init__()
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f'Argument "n_layers" must be a positive integer, got {n_layers!r}.')
        _check_geometry(in_channels, 1, width, n_layers)
        self.n_layers = n_layers
        ch = level_channels(width, n_layers + 1, max_mult)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch[0], 4, 2, 1), make_act("leakyrelu")]
        for i in range(1, n_layers):
            layers.append(ConvNormAct(ch[i - 1], ch[i], 4, 2, 1, norm=norm, act="leakyrelu"))
        layers.append(ConvNormAct(ch[n_layers - 1], ch[n_layers], 4, 1, 1, norm=norm, act="leakyrelu"))
        layers.append(nn.Conv2d(ch[n_layers], 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    @property
    def receptive_field(self) -> int:
        """Side of the square input patch that one output logit sees."""
        return patchgan_receptive_field(self.n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def patchgan_receptive_field(n_layers: int) -> int:
    """Receptive field in pixels of a :class:`PatchGANDiscriminator` with ``n_layers`` stride-2 layers."""
    strides = [2] * n_layers + [1, 1]
    rf = 1
    for s in reversed(strides):  # every layer has a 4x4 kernel
        rf = (rf - 1) * s + 4
    return rf


def init_normal(module: nn.Module, std: float = 0.02) -> nn.Module:
    """pix2pix initialisation: conv weights ~ N(0, std), norm scales ~ N(1, std), biases 0. Returns ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


def check_batch(x: torch.Tensor, channels: int, multiple: int, what: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is ``[B, channels, H, W]`` with H and W multiples of ``multiple``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'Argument "{what}" must be a torch.Tensor, got {type(x).__name__}.')
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f'Argument "{what}" must have shape [B, {channels}, H, W], got {list(x.shape)}.')
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(
            f'Argument "{what}" has spatial size {h}x{w}; both must be multiples of {multiple} '
            "(pad the slices, e.g. with the engine, or choose a smaller depth)."
        )


def _int_arg(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int (integral floats accepted) of at least ``minimum``, else ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise ValueError(f'Argument "{name}" must be an integer >= {minimum}, got {value!r}.')
    return int(value)


def _as_tuple(names: Sequence[str] | str, what: str) -> tuple[str, ...]:
    """Modality names as a tuple (a single string is one modality)."""
    from ..core.volume import normalise_modality

    if isinstance(names, str):
        names = (names,)
    out = tuple(normalise_modality(n) for n in names)
    if not out:
        raise ValueError(f'Argument "{what}" must name at least one modality.')
    return out
