"""DisDiff (Zhang et al.): a disentanglement network guiding an adversarial diffusion module with a large step.

Pieces:

* the DRIT++ backbone (:class:`~napari_medtrans.translators.disentangle.DisentangleNet`): content and attribute
  encoders, generators, modality discriminators and the content discriminator ``D_c`` (Eq. 6-9, Eq. 7);
* per modality, an adversarial diffusion module as in SynDiff (Sec. 2.1): ``N = T / k`` large steps with the
  variance schedule ``gamma_s`` (Eq. 3, :class:`AdversarialSchedule`), a generator ``G_theta(x_t, c, t)`` that
  predicts ``x_0`` (Eq. 10) from which ``x_{t-k}`` is drawn from the Gaussian posterior (Eq. 11), and a
  time-conditioned discriminator ``D_theta(x_{t-k}, x_t, t)`` trained with the non-saturating losses and the
  gradient penalty ``eta`` (Eq. 4-5);
* the diffusion cycle loss (Eq. 12): the module for modality ``i`` rebuilds ``m_i`` from the cross translation
  ``m_{i->j}`` and its content ``E_c^j(m_{i->j})`` (and the attribute ``z_a^{m_i}``); its L1 distance to ``m_i``
  is ``L_cyc`` (see "Conditioning" below).

Inference (``source -> target``): content of the source image, attribute of the target modality from a
``reference`` image when one is given, else the running mean attribute stored in the checkpoint (so a user needs
no target image); then ``steps`` reverse steps from pure noise, conditioned on the source image.

Choices where the paper is silent or unclear
--------------------------------------------
* **Schedule (Eq. 3).** The printed formula is garbled; this follows SynDiff/DDGAN, which it cites:
  ``gamma_s = 1 - exp(-beta_min / N - (beta_max - beta_min) (2 s - 1) / (2 N^2))``, ``s = 1 ... N``, with
  ``beta_min = 0.1``, ``beta_max = 20`` and ``N = 4`` (SynDiff's T = 1000, k = 250), so that
  ``prod (1 - gamma_s) = exp(-beta_min - (beta_max - beta_min) / 2)`` as for the variance-preserving SDE.
* **Forward step (Eq. 2).** ``x_s = sqrt(1 - gamma_s) x_{s-1} + sqrt(gamma_s) eps`` (variance preserving, as in
  SynDiff's code); the printed ``(1 - gamma_t)`` without the square root would not keep the variance.
* **Conditioning (Eq. 10, Fig. 1; ``diff_condition``).** The diffusion generator of modality ``m`` sees ``x_t``
  concatenated with a conditioning image and the content map (bilinearly upsampled, 1x1-projected to
  ``cond_channels``); the time enters every block as a bias from the DDPM time MLP. No latent ``z`` as in DDGAN:
  randomness comes from ``x_N`` and the posterior noise. Which image conditions it must be the same kind of
  image in training and at inference:

  - ``"cross"`` (what the recipe trains): Fig. 1 feeds the cross-domain images ``m_{i->j}``, ``m_{j->i}`` to the
    diffusion modules, which rebuild ``m_i``, ``m_j`` (Eq. 12). So the module of modality ``i`` learns from
    ``m_{i->j}``: an image of the *other* modality that carries ``m_i``'s anatomy, with its content
    ``E_c^j(m_{i->j})``; and, as the inference of Sec. 2.3 says, the attribute of its own modality
    (``z_a^{m_i}``; a bias added to the time embedding after unit-RMS scaling). At inference the module of the
    target gets exactly that kind of input: the source image (the other modality, carrying the anatomy), its
    content, and the target attribute (stored mean or ``reference``). This is SynDiff's pairing (its diffusive
    module learns from a synthetic source made by the non-diffusive one and meets the real source at inference).
    The gradient of Eq. 12 flows through ``m_{i->j}`` into the backbone, as a cycle loss does.
  - ``"cycle"`` (checkpoints written before the key existed; None builds it): the module was conditioned on the
    cycle reconstruction ``m_{i->j->i} = G^i(E_c^j(m_{i->j}), z_a^{m_i})`` in training, which the backbone's own
    cycle loss trains towards the Eq. 12 target, so copying it was the easy solution, while inference gave it
    the cross translation ``G^t(z_c, z_a^t)``. Measured on the shipped model: draft alone 10.86 dB, full model
    10.72 dB (issue 19).
* **Networks.** The diffusion generator is a small time-conditioned U-Net (``diff_width``, ``diff_depth``),
  much smaller than SynDiff's NCSN++; the time-conditioned discriminator is a strided conv net on
  ``[x_{t-k}, x_t]`` with the time bias in each layer, averaging patch logits.
* **Weights.** Backbone: DRIT++ (self-reconstruction 10, cross-cycle 10, adversarial 1, content 1). Diffusion:
  adversarial 1, Eq. 12 cycle 10 (``lambdas``), ``eta = 1`` (SynDiff's ``r1_gamma``).
* **Fewer steps at inference.** ``steps < N`` visits evenly spaced levels (always ``N`` and 1) and draws
  ``x_{s'}`` from the posterior ``q(x_{s'} | x_s, x_0_hat)`` between non-adjacent levels.
* **Attribute injection.** ``attr_injection`` of the backbone (see
  :mod:`~napari_medtrans.translators.disentangle`): None (old checkpoints) is "concat", the recipe trains "adain".
* **Ablations (Table 2).** ``use_diffusion=False`` translates with the backbone only and
  ``use_content_disc=False`` drops ``D_c`` (row 3); both together are row 1 (the paper's row 1 has neither).
  Row 2 (diffusion without disentanglement) is not offered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UnknownChoiceError
from .base import TranslationOutput, Translator, TranslatorSpec, register_translator
from .blocks import ConvNormAct, check_batch, make_norm
from .diffusion import TimeEmbedding
from .disentangle import ATTR_INJECTIONS, GAN_MODES, DisentangleNet, TwoWayTranslatorMixin, unit_rms

__all__ = [
    "AdversarialSchedule",
    "DiffusionGenerator",
    "TimeDiscriminator",
    "DisDiffTranslator",
    "PRESETS",
    "DIFF_CONDITIONS",
    "disdiff",
]

#: Named sizes. "paper": DRIT++'s backbone widths and a 3-level diffusion U-Net; "cpu": small, trains on a CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(width=64, n_down=2, n_res=4, attr_dim=8, disc_width=64, disc_layers=3, diff_width=64,
                  diff_depth=3, cond_channels=8),
    "cpu": dict(width=16, n_down=2, n_res=1, attr_dim=8, disc_width=16, disc_layers=2, diff_width=16,
                diff_depth=2, cond_channels=4),
}

#: What conditions the diffusion module (see the module notes): "cross" (trained) or "cycle" (old checkpoints).
DIFF_CONDITIONS = ("cross", "cycle")

DEFAULT_LAMBDAS = dict(rec=10.0, cyc=10.0, adv=1.0, content=1.0, kl=0.01, diff_adv=1.0, diff_cyc=10.0)


class AdversarialSchedule:
    """The ``N``-step forward process of adversarial diffusion (Eq. 2-3) and its posterior (Eq. 11).

    Levels are ``s = 0 ... N`` (``x_0`` the image, ``x_N`` almost pure noise); ``gamma[s - 1]`` is ``gamma_s``.
    """

    def __init__(self, n_steps: int = 4, beta_min: float = 0.1, beta_max: float = 20.0):
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f'Argument "n_steps" must be a positive integer, got {n_steps!r}.')
        if not 0 <= beta_min < beta_max:
            raise ValueError(f'Arguments "beta_min" < "beta_max" must hold, got {beta_min!r} and {beta_max!r}.')
        self.n_steps = n = int(n_steps)
        s = torch.arange(1, n + 1, dtype=torch.float64, device="cpu")  # a fixed CPU table, also under a meta build
        # Eq. 3 (SynDiff / DDGAN discretisation of the VP SDE)
        self.gammas = 1 - torch.exp(-beta_min / n - (beta_max - beta_min) * (2 * s - 1) / (2 * n * n))
        self.alpha_bars = torch.cat([torch.ones(1, dtype=torch.float64, device="cpu"), torch.cumprod(1 - self.gammas, 0)])

    def _abar(self, s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alpha_bars.to(like.device)[s.long()].to(like.dtype).view(-1, 1, 1, 1)

    def q_sample(self, x0: torch.Tensor, s: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_s`` given ``x_0`` (Eq. 2 applied ``s`` times): ``sqrt(abar_s) x_0 + sqrt(1 - abar_s) eps``."""
        a = self._abar(s, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def q_step(self, x_prev: torch.Tensor, s: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One large step, Eq. 2: ``x_s = sqrt(1 - gamma_s) x_{s-1} + sqrt(gamma_s) eps``."""
        g = self.gammas.to(x_prev.device)[(s - 1).long()].to(x_prev.dtype).view(-1, 1, 1, 1)
        return (1 - g).sqrt() * x_prev + g.sqrt() * noise

    def q_pair(self, x0: torch.Tensor, s: torch.Tensor, noise1: torch.Tensor, noise2: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A real pair ``(x_{s-1}, x_s)`` from ``x_0``: the discriminator's "true" sample of Eq. 5."""
        x_prev = self.q_sample(x0, s - 1, noise1)
        return x_prev, self.q_step(x_prev, s, noise2)

    def posterior_sample(self, x0_hat: torch.Tensor, x_s: torch.Tensor, s: torch.Tensor, s_prev: torch.Tensor,
                         noise: torch.Tensor) -> torch.Tensor:
        """Eq. 11: draw ``x_{s'} ~ q(x_{s'} | x_s, x_0_hat)`` for ``s' < s`` (no noise when ``s' = 0``).

        With ``beta = 1 - abar_s / abar_{s'}``: mean ``beta sqrt(abar_{s'}) / (1 - abar_s) x_0 +
        (1 - abar_{s'}) sqrt(1 - beta) / (1 - abar_s) x_s``, variance ``beta (1 - abar_{s'}) / (1 - abar_s)``.
        """
        a_s, a_p = self._abar(s, x_s), self._abar(s_prev, x_s)
        beta = 1 - a_s / a_p
        mean = beta * a_p.sqrt() / (1 - a_s) * x0_hat + (1 - a_p) * (1 - beta).sqrt() / (1 - a_s) * x_s
        var = beta * (1 - a_p) / (1 - a_s)
        return mean + var.clamp_min(0).sqrt() * noise

    def levels(self, steps: int | None) -> list[int]:
        """Levels an inference run visits, descending from ``N`` to 1 (``steps`` of them)."""
        n = self.n_steps
        steps = n if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= n:
            raise ValueError(f'Argument "steps" must be an integer in [1, {n}], got {steps!r}.')
        if steps == 1:
            return [n]
        return sorted({int(round(1 + i * (n - 1) / (steps - 1))) for i in range(steps)}, reverse=True)


class _TimeBlock(nn.Module):
    """Two 3x3 conv-GroupNorm-SiLU layers, a time bias between them, a 1x1 shortcut when channels change."""

    def __init__(self, cin: int, cout: int, tdim: int):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, norm="group", act="silu")
        self.temb = nn.Linear(tdim, cout)
        self.conv2 = ConvNormAct(cout, cout, 3, norm="group", act="silu")
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x) + self.temb(temb)[:, :, None, None]
        return self.skip(x) + self.conv2(h)


class DiffusionGenerator(nn.Module):
    """``G_theta(x_t, t, z_c, draft) -> x_0_hat`` in [-1, 1] (Eq. 10): a time-conditioned U-Net.

    Parameters
    ----------
    content_channels : int
        Channels of the content map (upsampled to the image grid and projected to ``cond_channels``).
    width, depth : int
        U-Net width and number of downsamplings (image sides multiples of ``2**depth``).
    cond_channels : int
        Channels the content is projected to.
    channels : int
        Image channels.
    attr_dim : int or None
        With a number, an attribute ``[B, attr_dim]`` (scaled to unit RMS) adds a learned bias to the time
        embedding; None (old checkpoints) takes no attribute.
    """

    def __init__(self, content_channels: int, *, width: int = 64, depth: int = 3, cond_channels: int = 8,
                 channels: int = 1, attr_dim: int | None = None):
        super().__init__()
        tdim = 4 * width
        self.time = TimeEmbedding(width, tdim)
        if attr_dim is not None:
            self.attr = nn.Linear(int(attr_dim), tdim)
        self.cond = nn.Conv2d(content_channels, cond_channels, 1)
        ch = [width * min(2**i, 4) for i in range(depth + 1)]
        self.stem = nn.Conv2d(2 * channels + cond_channels, ch[0], 3, padding=1)
        self.downs = nn.ModuleList(_TimeBlock(ch[i], ch[i + 1], tdim) for i in range(depth))
        self.mid = _TimeBlock(ch[depth], ch[depth], tdim)
        self.ups = nn.ModuleList(_TimeBlock(ch[i + 1] + ch[i + 1], ch[i], tdim) for i in reversed(range(depth)))
        self.head = nn.Sequential(make_norm("group", ch[0]), nn.SiLU(), nn.Conv2d(ch[0], channels, 3, padding=1),
                                  nn.Tanh())
        self.depth = int(depth)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, content: torch.Tensor, draft: torch.Tensor,
                attr: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.time(t)
        if attr is not None and hasattr(self, "attr"):
            temb = temb + self.attr(unit_rms(attr.to(temb.dtype)))
        c = F.interpolate(self.cond(content), size=x_t.shape[-2:], mode="bilinear", align_corners=False)
        h = self.stem(torch.cat([x_t, draft.to(x_t.dtype), c.to(x_t.dtype)], dim=1))
        skips = []
        for down in self.downs:
            h = down(h, temb)
            skips.append(h)
            h = F.avg_pool2d(h, 2)
        h = self.mid(h, temb)
        for up in self.ups:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = up(torch.cat([h, skips.pop()], dim=1), temb)
        return self.head(h)


class TimeDiscriminator(nn.Module):
    """``D_theta(x_{t-k}, x_t, t)`` (Eq. 4-5): logits, one per image (mean of patch logits)."""

    def __init__(self, *, width: int = 64, n_layers: int = 3, channels: int = 1):
        super().__init__()
        tdim = 4 * width
        self.time = TimeEmbedding(width, tdim)
        ch = [2 * channels] + [width * min(2**i, 8) for i in range(n_layers)]
        self.convs = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1) for i in range(n_layers))
        self.temb = nn.ModuleList(nn.Linear(tdim, ch[i + 1]) for i in range(n_layers))
        self.out = nn.Conv2d(ch[-1], 1, 3, padding=1)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time(t)
        h = torch.cat([x_prev, x_t], dim=1)
        for conv, lin in zip(self.convs, self.temb):
            h = F.leaky_relu(conv(h) + lin(temb)[:, :, None, None], 0.2)
        return self.out(h).mean(dim=(1, 2, 3))


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class DisDiffTranslator(TwoWayTranslatorMixin, Translator):
    """DisDiff: ``source -> target`` by the adversarial diffusion module guided by disentangled features."""

    def __init__(self, spec: TranslatorSpec, config: Mapping[str, Any]):
        super().__init__(spec, config)
        self._build_parts()

    @property
    def diff_condition(self) -> str:
        """What conditions the diffusion module: "cross" or "cycle" (None in the config: "cycle")."""
        return self.config.get("diff_condition") or "cycle"

    def _build_parts(self) -> None:
        """Every network and loss setting, from :attr:`config` (also after :meth:`settle`)."""
        c = self.config
        self.source, self.target = c["source"], c["target"]
        self.net = DisentangleNet((self.source, self.target), width=c["width"], n_down=c["n_down"],
                                  n_res=c["n_res"], attr_dim=c["attr_dim"], disc_width=c["disc_width"],
                                  disc_layers=c["disc_layers"], attr_injection=c.get("attr_injection") or "concat",
                                  gan_mode=c.get("gan_mode", "bce"),
                                  other_negatives=bool(c.get("other_negatives")))
        mods = (self.source, self.target)
        cross = self.diff_condition == "cross"
        self.diff = nn.ModuleDict({m: DiffusionGenerator(self.net.content_channels, width=c["diff_width"],
                                                         depth=c["diff_depth"], cond_channels=c["cond_channels"],
                                                         attr_dim=c["attr_dim"] if cross else None)
                                   for m in mods})
        self.dis_t = nn.ModuleDict({m: TimeDiscriminator(width=c["disc_width"], n_layers=c["disc_layers"])
                                    for m in mods})
        self.schedule = AdversarialSchedule(c["n_steps"], c["beta_min"], c["beta_max"])
        self.lambdas = dict(DEFAULT_LAMBDAS)
        self.lambdas.update(c["lambdas"])
        if not c["use_content_disc"]:
            self.lambdas["content"] = 0.0
        if not c["use_diffusion"]:
            self.lambdas["diff_adv"] = self.lambdas["diff_cyc"] = 0.0

    # -- inference ------------------------------------------------------------------------------------
    def denoise(self, x_s: torch.Tensor, s: torch.Tensor, content: torch.Tensor, draft: torch.Tensor,
                modality: str, attr: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 10: ``x_0_hat = G_theta^m(x_s, z_c, s)`` (the network sees the time index ``s - 1``).

        ``draft`` is the conditioning image (see the module notes), ``attr`` the attribute of ``modality``
        (used with ``diff_condition="cross"``).
        """
        return self.diff[modality](x_s, (s - 1).float(), content, draft, attr)

    def translate(self, x: torch.Tensor, *, steps: int | None = None, generator: torch.Generator | None = None,
                  reference: torch.Tensor | None = None) -> TranslationOutput:
        """Translate ``source`` slices ``[B, 1, H, W]``; ``reference`` images of ``target`` give the attribute.

        Without ``reference`` the stored mean attribute of the target modality is used. The diffusion module is
        conditioned on the source image (``diff_condition="cross"``) or on the backbone's translation ("cycle").
        """
        check_batch(x, 1, self.spec.size_multiple, f"{self.source} slices")
        if reference is not None:
            check_batch(reference, 1, 1, f"{self.target} reference")
        content = self.net.enc_c[self.source](x)
        if reference is not None:
            attr = self.net.enc_a[self.target](reference)
            if attr.shape[0] == 1:
                attr = attr.expand(x.shape[0], -1)
        else:
            attr = self.net.mean_attribute(self.target, x.shape[0])
        draft = self.net.decode(content, attr, self.target)
        if not self.config["use_diffusion"]:
            return TranslationOutput(image=draft.clamp(-1.0, 1.0))
        levels = self.schedule.levels(steps)
        cross = self.diff_condition == "cross"
        cond = x if cross else draft
        x_s = _randn(draft, generator)
        for i, s in enumerate(levels):
            s_t = torch.full((x.shape[0],), s, device=x.device, dtype=torch.long)
            x0 = self.denoise(x_s, s_t, content, cond, self.target, attr if cross else None).clamp(-1.0, 1.0)
            s_prev = levels[i + 1] if i + 1 < len(levels) else 0
            if s_prev == 0:
                x_s = x0
                break
            x_s = self.schedule.posterior_sample(x0, x_s, s_t, torch.full_like(s_t, s_prev),
                                                 _randn(x0, generator))  # Eq. 11
        return TranslationOutput(image=x_s.clamp(-1.0, 1.0))

    # -- training -------------------------------------------------------------------------------------
    def forward_train(self, x_i: torch.Tensor, x_j: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One unpaired step's forward pass: ``x_i`` of ``source``, ``x_j`` of ``target``.

        Adds to the backbone's outputs, for each side ``m`` in ``("i", "j")``: the level ``s_m``, the real pair
        ``prev_m, xs_m`` (Eq. 2), the prediction ``x0_m`` (Eq. 10) and the fake ``fake_prev_m`` (Eq. 11). The
        prediction of ``m_i`` is conditioned on the content of the translated image ``E_c^j(m_{i->j})`` and on
        ``m_{i->j}`` itself with the attribute ``z_a^{m_i}`` (``diff_condition="cross"``), or on the cycle
        reconstruction ``m_{i->j->i}`` ("cycle", old checkpoints).
        """
        out = self.net.forward_pair(x_i, x_j)
        if not self.config["use_diffusion"]:
            return out
        n = self.schedule.n_steps
        if self.diff_condition == "cross":
            sides = (("i", self.source, out["zc_fj"], out["fake_j"], out["za_i"]),
                     ("j", self.target, out["zc_fi"], out["fake_i"], out["za_j"]))
        else:
            sides = (("i", self.source, out["zc_fj"], out["cyc_i"], None),
                     ("j", self.target, out["zc_fi"], out["cyc_j"], None))
        for side, mod, content, draft, attr in sides:
            x0 = out[f"x_{side}"]
            b = x0.shape[0]
            s = torch.randint(1, n + 1, (b,), generator=generator).to(x0.device)
            prev, xs = self.schedule.q_pair(x0, s, _randn(x0, generator), _randn(x0, generator))
            x0_hat = self.denoise(xs, s, content, draft, mod, attr)
            fake_prev = self.schedule.posterior_sample(x0_hat, xs, s, s - 1, _randn(x0, generator))
            out.update({f"s_{side}": s, f"prev_{side}": prev, f"xs_{side}": xs, f"x0_{side}": x0_hat,
                        f"fake_prev_{side}": fake_prev})
        return out

    def generator_losses(self, out: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Backbone losses plus Eq. 4 (diffusion adversarial) and Eq. 12 (diffusion cycle); ``"total"`` sums them."""
        lam = self.lambdas
        losses = self.net.generator_losses(out, lambda_rec=lam["rec"], lambda_cyc=lam["cyc"],
                                           lambda_adv=lam["adv"], lambda_content=lam["content"],
                                           lambda_kl=lam["kl"])
        zero = out["x_i"].new_zeros(())
        diff_adv, diff_cyc = zero, zero
        if self.config["use_diffusion"]:
            for side, mod in (("i", self.source), ("j", self.target)):
                logits = self.dis_t[mod](out[f"fake_prev_{side}"], out[f"xs_{side}"], (out[f"s_{side}"] - 1).float())
                diff_adv = diff_adv + F.softplus(-logits).mean()  # Eq. 4: -log D(x_hat_{t-k})
                diff_cyc = diff_cyc + F.l1_loss(out[f"x0_{side}"], out[f"x_{side}"])  # Eq. 12
        losses["diff_adv"], losses["diff_cyc"] = diff_adv, diff_cyc
        losses["total"] = losses["total"] + lam["diff_adv"] * diff_adv + lam["diff_cyc"] * diff_cyc
        return losses

    def discriminator_losses(self, out: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Backbone discriminators (Eq. 7 for ``D_c``) plus Eq. 5 with the gradient penalty ``eta``."""
        losses = self.net.discriminator_losses(out, use_content=bool(self.lambdas["content"]))
        zero = out["x_i"].new_zeros(())
        diff, gp = zero, zero
        if self.config["use_diffusion"]:
            for side, mod in (("i", self.source), ("j", self.target)):
                t = (out[f"s_{side}"] - 1).float()
                xs = out[f"xs_{side}"].detach()
                real = out[f"prev_{side}"].detach().requires_grad_(True)
                real_logits = self.dis_t[mod](real, xs, t)
                fake_logits = self.dis_t[mod](out[f"fake_prev_{side}"].detach(), xs, t)
                diff = diff + F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()  # Eq. 5
                (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
                gp = gp + grad.pow(2).flatten(1).sum(1).mean()  # Eq. 5: ||grad D(x_{t-k})||^2
        losses["diff"], losses["gp"] = diff, gp
        losses["total"] = losses["total"] + diff + self.config["eta"] * gp
        return losses

    def generator_parameters(self) -> list[nn.Parameter]:
        """Encoders, disentanglement generators and diffusion generators."""
        return [*self.net.generator_parameters(), *self.diff.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Modality, content and time-conditioned discriminators."""
        return [*self.net.discriminator_parameters(), *self.dis_t.parameters()]


@register_translator("disdiff")
def disdiff(*, source: str = "T1", target: str = "T2", preset: str | None = None, width: int | None = None,
            n_down: int | None = None, n_res: int | None = None, attr_dim: int | None = None,
            disc_width: int | None = None, disc_layers: int | None = None, diff_width: int | None = None,
            diff_depth: int | None = None, cond_channels: int | None = None, n_steps: int = 4,
            beta_min: float = 0.1, beta_max: float = 20.0, eta: float = 1.0, use_diffusion: bool = True,
            use_content_disc: bool = True, lambdas: Mapping[str, float] | None = None,
            attr_injection: str | None = None, diff_condition: str | None = None,
            gan_mode: str = "bce", other_negatives: bool | None = None) -> DisDiffTranslator:
    """Build DisDiff with random weights.

    Parameters
    ----------
    source, target : str
        The translation direction (the backbone holds both modalities; one checkpoint serves both
        directions: ``load_translator(path, direction="T2->T1")``).
    preset : {"paper", "cpu"} or None
        Size defaults (:data:`PRESETS`); None is "paper". Explicit sizes override it.
    width, n_down, n_res, attr_dim, disc_width, disc_layers : int or None
        Backbone sizes (:class:`~napari_medtrans.translators.disentangle.DisentangleNet`); the discriminator
        sizes serve the time-conditioned discriminators too.
    diff_width, diff_depth, cond_channels : int or None
        Diffusion generator sizes (:class:`DiffusionGenerator`).
    n_steps : int
        ``N = T / k`` large diffusion steps (4 as in SynDiff).
    beta_min, beta_max : float
        Eq. 3's schedule.
    eta : float
        Gradient penalty weight (Eq. 5).
    use_diffusion, use_content_disc : bool
        Table 2 ablations.
    lambdas : mapping
        Overrides of the loss weights ``rec, cyc, adv, content, kl, diff_adv, diff_cyc``.
    attr_injection : {"adain", "concat"} or None
        How the backbone's generators take the attribute. None builds "concat", what checkpoints written before
        the key existed hold; the training recipe sets "adain" (see the module notes).
    diff_condition : {"cross", "cycle"} or None
        What conditions the diffusion module. None builds "cycle" (old checkpoints); the recipe sets "cross".
    gan_mode : {"bce", "lsgan"}
        Loss of the backbone's modality and content discriminators (Eq. 7 is BCE, the default); training only.
    """
    if gan_mode not in GAN_MODES:
        raise UnknownChoiceError("DisDiff GAN loss", str(gan_mode), GAN_MODES)
    if preset is not None and preset not in PRESETS:
        raise UnknownChoiceError("DisDiff preset", str(preset), list(PRESETS))
    if attr_injection is not None and attr_injection not in ATTR_INJECTIONS:
        raise UnknownChoiceError("DisDiff attribute injection", str(attr_injection), ATTR_INJECTIONS)
    if diff_condition is not None and diff_condition not in DIFF_CONDITIONS:
        raise UnknownChoiceError("DisDiff diffusion conditioning", str(diff_condition), DIFF_CONDITIONS)
    if source == target:
        raise ValueError(f'Arguments "source" and "target" must differ, both are {source!r}.')
    cfg = dict(PRESETS[preset or "paper"])
    for k, v in dict(width=width, n_down=n_down, n_res=n_res, attr_dim=attr_dim, disc_width=disc_width,
                     disc_layers=disc_layers, diff_width=diff_width, diff_depth=diff_depth,
                     cond_channels=cond_channels).items():
        if v is not None:
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f'Argument "{k}" must be a positive integer, got {v!r}.')
            cfg[k] = int(v)
    lam = dict(lambdas or {})
    unknown = set(lam) - set(DEFAULT_LAMBDAS)
    if unknown:
        raise UnknownChoiceError("DisDiff loss weight", sorted(unknown)[0], list(DEFAULT_LAMBDAS))
    if not (math.isfinite(float(eta)) and float(eta) >= 0):
        raise ValueError(f'Argument "eta" must be a finite number >= 0, got {eta!r}.')
    cfg.update(source=str(source), target=str(target), preset=preset, n_steps=int(n_steps),
               beta_min=float(beta_min), beta_max=float(beta_max), eta=float(eta),
               use_diffusion=bool(use_diffusion), use_content_disc=bool(use_content_disc),
               lambdas={k: float(v) for k, v in lam.items()}, attr_injection=attr_injection,
               diff_condition=diff_condition, gan_mode=str(gan_mode),
               other_negatives=None if other_negatives is None else bool(other_negatives))
    AdversarialSchedule(cfg["n_steps"], cfg["beta_min"], cfg["beta_max"])  # validates
    multiple = 2 ** max(cfg["n_down"], cfg["diff_depth"])
    spec = TranslatorSpec(method="disdiff", inputs=(cfg["source"],), outputs=(cfg["target"],),
                          size_multiple=multiple, paired=False, stochastic=bool(use_diffusion),
                          default_steps=cfg["n_steps"] if use_diffusion else None)
    return DisDiffTranslator(spec, cfg)
