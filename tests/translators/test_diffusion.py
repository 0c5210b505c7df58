"""Shared diffusion machinery: schedules, the forward process (Eq. 14), DDPM / DDIM samplers (Eq. 15)."""

from __future__ import annotations

import math

import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators.diffusion import (
    GaussianDiffusion,
    TimeEmbedding,
    make_beta_schedule,
    sampling_timesteps,
    timestep_embedding,
)


def test_schedules():
    lin = make_beta_schedule("linear", 1000)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02) and len(lin) == 1000
    cos = make_beta_schedule("cosine", 200)
    abar = torch.cumprod(1 - cos, 0)
    assert (cos > 0).all() and (cos <= 0.999).all() and (abar[1:] < abar[:-1]).all()
    assert float(abar[-1]) < 1e-3
    with pytest.raises(UnknownChoiceError, match="linear"):
        make_beta_schedule("quadratic", 10)


def test_closed_form_forward_equals_iterated_eq14():
    """q_sample (closed form) has the distribution of Eq. 14 applied t + 1 times."""
    d = GaussianDiffusion(100, "linear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((40000,), 0.7)
    t = 37
    x = x0.clone()
    for s in range(t + 1):
        x = d.q_step(x, torch.full((1,), s), torch.randn(x.shape, generator=g))
    closed = d.q_sample(x0, torch.full((1,), t), torch.randn(x0.shape, generator=g))
    abar = float(d.alphas_cumprod[t])
    for sample in (x, closed):
        assert float(sample.mean()) == pytest.approx(math.sqrt(abar) * 0.7, abs=0.01)
        assert float(sample.var()) == pytest.approx(1 - abar, rel=0.03)


def test_sampling_timesteps():
    assert sampling_timesteps(1000, 10) == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert sampling_timesteps(1000, 1) == [999]
    assert sampling_timesteps(1000, 2) == [0, 999]
    assert sampling_timesteps(50, 50) == list(range(50))
    for bad in (0, 51, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            sampling_timesteps(50, bad)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_recover_a_gaussian_with_the_optimal_denoiser(sampler):
    """With data N(m, s^2) the best x0-predictor is known in closed form; the samplers must then draw N(m, s^2)."""
    m, s = 0.3, 0.2
    d = GaussianDiffusion(1000, "linear", prediction="x0", clip_x0=False)

    def oracle(x_t, t):
        abar = d.alphas_cumprod.to(x_t.dtype)[t].view(-1, 1)
        gain = s**2 * abar.sqrt() / (abar * s**2 + 1 - abar)
        return m + gain * (x_t - abar.sqrt() * m)

    stds = []
    for steps in (10, 100, 1000):
        g = torch.Generator().manual_seed(1)
        out = d.sample(oracle, (10000, 1), steps=steps, sampler=sampler, generator=g, dtype=torch.float64)
        assert float(out.mean()) == pytest.approx(m, abs=0.01)
        stds.append(float(out.std()))
    # The full chain draws the data distribution; shortened chains shrink the spread, less with more steps.
    assert stds[-1] == pytest.approx(s, rel=0.04)
    assert stds[0] < stds[1] < stds[2]


def test_eps_prediction_and_conversions():
    d = GaussianDiffusion(100, "cosine", prediction="eps", clip_x0=False)
    x0 = torch.randn(4, 1, 3, 3)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 10, 50, 99])
    x_t = d.q_sample(x0, t, eps)
    torch.testing.assert_close(d.x0_from_eps(x_t, t, eps), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(d.eps_from_x0(x_t, t, x0), eps, rtol=1e-4, atol=1e-4)
    x0_hat, _ = d.predict(lambda x, tt: eps, x_t, t)  # a perfect noise predictor
    torch.testing.assert_close(x0_hat, x0, rtol=1e-4, atol=1e-4)


def test_ddim_deterministic_and_seeded():
    d = GaussianDiffusion(100)

    def model(x, t):
        return 0.5 * x

    a = d.sample(model, (2, 1, 4, 4), steps=5, generator=torch.Generator().manual_seed(3))
    b = d.sample(model, (2, 1, 4, 4), steps=5, generator=torch.Generator().manual_seed(3))
    c = d.sample(model, (2, 1, 4, 4), steps=5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    x_T = torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(d.ddim_sample(model, x_T.shape, steps=3, x_T=x_T),
                               d.ddim_sample(model, x_T.shape, steps=3, x_T=x_T))
    with pytest.raises(UnknownChoiceError, match="ddim"):
        d.sample(model, (1, 1, 2, 2), steps=2, sampler="euler")


def test_time_embedding():
    e = timestep_embedding(torch.tensor([0.0, 5.0, 999.0]), 7)
    assert e.shape == (3, 7)
    torch.testing.assert_close(e[0, :3], torch.ones(3))  # cos(0)
    torch.testing.assert_close(e[0, 3:6], torch.zeros(3))  # sin(0)
    assert torch.equal(e[:, 6], torch.zeros(3))  # odd size: zero column
    assert not torch.allclose(e[1], e[2])
    te = TimeEmbedding(8)
    assert te(torch.tensor([1, 2])).shape == (2, 32)
