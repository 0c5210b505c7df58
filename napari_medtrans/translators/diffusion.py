"""Shared diffusion machinery: noise schedules, the forward process, DDPM and DDIM samplers, time embeddings.

Written for every diffusion translator (EDTS-Trans, CDM, DisDiff, HiFi-Syn): a method supplies a network
``model_fn(x_t, t) -> output`` (conditioning closed over) and a :class:`GaussianDiffusion`; the sampler does the
rest. Nothing here holds trainable parameters except :class:`TimeEmbedding`.

Notation (Ho et al. 2020, "DDPM"; EDTS-Trans Eq. 14-15)
------------------------------------------------------
* ``betas[t]``, ``t = 0 ... T-1``: the variance schedule. ``alphas = 1 - betas``; ``alpha_bar[t] = prod_{s<=t}
  alphas[s]``.
* Forward process (Eq. 14): ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps``, whose closed form
  ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` is :meth:`GaussianDiffusion.q_sample`.
* Reverse process (Eq. 15): ``p(x_{t-1} | x_t) = N(mu_theta(x_t, t), Sigma)``, with the mean from the network's
  prediction of ``x_0`` (or of ``eps``) through the Gaussian posterior ``q(x_{t-1} | x_t, x_0)`` and the fixed
  variance ``Sigma = beta_tilde_t I`` (the posterior variance; DDPM's "fixed small" choice).
* The network may predict ``x_0`` (``prediction="x0"``) or the noise (``prediction="eps"``); either is converted
  to the other with :meth:`GaussianDiffusion.x0_from_eps` / :meth:`GaussianDiffusion.eps_from_x0`.

Fewer sampling steps than training steps
----------------------------------------
Both samplers take ``steps`` (1 ... T) at inference: the timesteps ``tau_i = round(i (T - 1) / (steps - 1))``,
``i = 0 ... steps-1``, evenly spaced and including both ``T - 1`` (where sampling starts from pure noise) and 0
(so the last network evaluation sees the least noisy level; ending at ``T / steps`` instead makes the final
``x0`` a posterior mean from a noisy level and visibly shrinks the sample variance at 10 steps).

* DDPM (:meth:`GaussianDiffusion.ddpm_sample`) runs the ancestral sampler on the respaced chain (Nichol & Dhariwal
  2021): ``beta'_i = 1 - alpha_bar[tau_i] / alpha_bar[tau_{i-1}]``, so ``steps = T`` is the original DDPM.
* DDIM (:meth:`GaussianDiffusion.ddim_sample`, Song et al. 2021) with ``eta`` (0 = deterministic given the
  starting noise, 1 = DDPM-like variance).

Randomness comes only from the ``generator`` passed in, so a seeded call repeats exactly on one device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.cancel import cancellation_point
from ..core.errors import UnknownChoiceError

__all__ = [
    "SCHEDULES",
    "PREDICTIONS",
    "SAMPLERS",
    "make_beta_schedule",
    "timestep_embedding",
    "TimeEmbedding",
    "GaussianDiffusion",
    "TrainingForward",
    "sampling_timesteps",
]

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("x0", "eps")
SAMPLERS = ("ddim", "ddpm")

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_beta_schedule(kind: str = "linear", timesteps: int = 1000, *, beta_start: float = 1e-4,
                       beta_end: float = 0.02) -> torch.Tensor:
    """Variance schedule ``betas`` (float64, length ``timesteps``).

    Parameters
    ----------
    kind : {"linear", "cosine"}
        "linear": evenly from ``beta_start`` to ``beta_end`` (DDPM: 1e-4 to 0.02 over 1000 steps, scaled by
        1000 / timesteps so shorter chains keep the same overall noise). "cosine": Nichol & Dhariwal 2021
        (``alpha_bar(t) = cos^2(((t/T) + s)/(1 + s) * pi/2)``, s = 0.008, betas clipped at 0.999).
    timesteps : int
        T, the number of diffusion steps.
    beta_start, beta_end : float
        Ends of the linear schedule for T = 1000.
    """
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 1:
        raise ValueError(f'Argument "timesteps" must be a positive integer, got {timesteps!r}.')
    if kind == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), timesteps, dtype=torch.float64,
                              device="cpu")
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64, device="cpu") / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise UnknownChoiceError("noise schedule", str(kind), SCHEDULES)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in Transformers and DDPM.

    ``[cos(t w_0), ..., cos(t w_{h-1}), sin(t w_0), ..., sin(t w_{h-1})]`` with ``h = dim // 2`` and
    ``w_j = max_period ** (-j / h)``; a zero column is appended when ``dim`` is odd.

    Parameters
    ----------
    t : torch.Tensor
        ``[B]`` timesteps.
    dim : int
        Embedding size.

    Returns
    -------
    torch.Tensor
        ``[B, dim]`` float32.
    """
    if t.ndim != 1:
        raise ValueError(f'Argument "t" must be a 1D tensor of timesteps, got shape {list(t.shape)}.')
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding followed by Linear-SiLU-Linear (the DDPM time MLP): ``[B] -> [B, out_dim]``."""

    def __init__(self, dim: int, out_dim: int | None = None):
        super().__init__()
        self.dim = int(dim)
        out_dim = int(out_dim or 4 * dim)
        self.mlp = nn.Sequential(nn.Linear(self.dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        self.out_dim = out_dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.dim).to(self.mlp[0].weight.dtype))


def sampling_timesteps(timesteps: int, steps: int) -> list[int]:
    """The ``steps`` timesteps a shortened sampler visits, ascending: ``round(i (T - 1) / (steps - 1))``.

    Both ends are always visited: ``T - 1`` (where sampling starts from pure noise) and 0 (so the last step
    denoises the least noisy level); one step visits ``T - 1`` only.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= timesteps:
        raise ValueError(f'Argument "steps" must be an integer in [1, {timesteps}], got {steps!r}.')
    if steps == 1:
        return [timesteps - 1]
    return [int(round(i * (timesteps - 1) / (steps - 1))) for i in range(steps)]


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped ``[B, 1, 1, 1]`` on ``like``'s device and dtype."""
    out = values.to(t.device)[t.long()]
    return out.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


class TrainingForward:
    """``forward`` of the paired diffusion translators (CDM, EDTS-Trans), placed before ``Translator`` in their
    bases: ``model(x)`` is the translated image, ``model(x, target=y, **options)`` is
    ``model.training_outputs(x, y, **options)``, the training pass of the method's recipe."""

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None, **kwargs: Any):
        if target is not None:
            return self.training_outputs(x, target, **kwargs)
        return self.translate(x).image


class GaussianDiffusion:
    """A DDPM forward process and its samplers.

    Parameters
    ----------
    timesteps : int
        T (1000 in DDPM).
    schedule : {"linear", "cosine"}
        See :func:`make_beta_schedule`.
    prediction : {"x0", "eps"}
        What the network outputs.
    clip_x0 : bool
        Clamp the predicted ``x_0`` to [-1, 1] while sampling (images live there).
    """

    def __init__(self, timesteps: int = 1000, schedule: str = "linear", *, prediction: str = "x0",
                 clip_x0: bool = True, beta_start: float = 1e-4, beta_end: float = 0.02):
        if prediction not in PREDICTIONS:
            raise UnknownChoiceError("diffusion prediction", str(prediction), PREDICTIONS)
        self.timesteps = int(timesteps)
        self.schedule = schedule
        self.prediction = prediction
        self.clip_x0 = bool(clip_x0)
        self.betas = make_beta_schedule(schedule, self.timesteps, beta_start=beta_start, beta_end=beta_end)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    # -- forward process ---------------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``: Eq. 14 applied ``t + 1`` times."""
        abar = _gather(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One step of Eq. 14: ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps``."""
        beta = _gather(self.betas, t, x_prev)
        return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise

    def sample_t(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform random training timesteps ``[batch]`` in ``0 ... T-1``."""
        return torch.randint(0, self.timesteps, (batch,), device=device, generator=generator)

    # -- conversions -------------------------------------------------------------------------------------
    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        abar = _gather(self.alphas_cumprod, t, x_t)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        abar = _gather(self.alphas_cumprod, t, x_t)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    def predict(self, model_fn: ModelFn, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network and return ``(x0_hat, eps_hat)`` (``x0_hat`` clamped when ``clip_x0``).

        Every sampling step passes here, so a Cancel in the GUI takes effect within one step
        (:func:`~napari_medtrans.core.cancel.cancellation_point`)."""
        cancellation_point()
        out = model_fn(x_t, t).to(x_t.dtype)
        if self.prediction == "x0":
            x0 = out
        else:
            x0 = self.x0_from_eps(x_t, t, out)
        if self.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        return x0, self.eps_from_x0(x_t, t, x0)

    # -- samplers ----------------------------------------------------------------------------------------
    @staticmethod
    def _noise(shape, device, dtype, generator) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)

    def _reverse(self, model_fn: ModelFn, shape, steps: int, generator: torch.Generator | None, device, dtype,
                 x_T: torch.Tensor | None, update) -> torch.Tensor:
        """The walk both samplers share: from ``x_T`` (default: noise drawn with ``generator``) down the timesteps
        of :func:`sampling_timesteps`, one network evaluation each, ``x = update(x, x0, eps, a_t, a_prev, i)``
        with ``a_t = abar_t`` and ``a_prev`` the ``alpha_bar`` of the next timestep visited (1 after the last,
        ``i == 0``). Each sampler's ``update`` holds its equation."""
        taus = sampling_timesteps(self.timesteps, steps)
        x = x_T if x_T is not None else self._noise(shape, device, dtype, generator)
        abar = self.alphas_cumprod
        for i in reversed(range(len(taus))):
            t = torch.full((x.shape[0],), taus[i], device=x.device, dtype=torch.long)
            x0, eps = self.predict(model_fn, x, t)
            a_t = float(abar[taus[i]])
            a_prev = float(abar[taus[i - 1]]) if i > 0 else 1.0
            x = update(x, x0, eps, a_t, a_prev, i)
        return x

    def ddim_sample(self, model_fn: ModelFn, shape, *, steps: int, eta: float = 0.0,
                    generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                    x_T: torch.Tensor | None = None) -> torch.Tensor:
        """DDIM sampling in ``steps`` network evaluations (Song et al. 2021, Eq. 12).

        ``x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z`` with
        ``sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``; ``abar_prev = 1`` after
        the last step, which then returns ``x0_hat``.
        """

        def update(x, x0, eps, a_t, a_prev, i):  # Song et al. 2021, Eq. 12
            if i == 0:
                return x0
            sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(max(1 - a_t / a_prev, 0.0))
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * self._noise(x.shape, x.device, x.dtype, generator)
            return x

        return self._reverse(model_fn, shape, steps, generator, device, dtype, x_T, update)

    def ddpm_sample(self, model_fn: ModelFn, shape, *, steps: int, generator: torch.Generator | None = None,
                    device=None, dtype=torch.float32, x_T: torch.Tensor | None = None) -> torch.Tensor:
        """Ancestral DDPM sampling (Eq. 15) on the chain respaced to ``steps`` timesteps.

        With ``beta'`` from consecutive ``alpha_bar`` of the visited timesteps, the posterior mean is
        ``beta' sqrt(abar_prev) / (1 - abar_t) x0 + (1 - abar_prev) sqrt(1 - beta') / (1 - abar_t) x_t`` and the
        variance ``beta' (1 - abar_prev) / (1 - abar_t)``; no noise is added at the last step.
        """

        def update(x, x0, eps, a_t, a_prev, i):  # Eq. 15: posterior mean, plus noise except at the last step
            beta = 1 - a_t / a_prev
            c0 = beta * math.sqrt(a_prev) / (1 - a_t)
            ct = (1 - a_prev) * math.sqrt(1 - beta) / (1 - a_t)
            x = c0 * x0 + ct * x
            if i > 0:
                var = beta * (1 - a_prev) / (1 - a_t)
                x = x + math.sqrt(var) * self._noise(x.shape, x.device, x.dtype, generator)
            return x

        return self._reverse(model_fn, shape, steps, generator, device, dtype, x_T, update)

    def sample(self, model_fn: ModelFn, shape, *, steps: int, sampler: str = "ddim", eta: float = 0.0,
               generator: torch.Generator | None = None, device=None, dtype=torch.float32,
               x_T: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``x_0`` of ``shape`` with ``sampler`` ("ddim" or "ddpm") in ``steps`` network evaluations."""
        if sampler == "ddim":
            return self.ddim_sample(model_fn, shape, steps=steps, eta=eta, generator=generator, device=device,
                                    dtype=dtype, x_T=x_T)
        if sampler == "ddpm":
            return self.ddpm_sample(model_fn, shape, steps=steps, generator=generator, device=device, dtype=dtype,
                                    x_T=x_T)
        raise UnknownChoiceError("sampler", str(sampler), SAMPLERS)
