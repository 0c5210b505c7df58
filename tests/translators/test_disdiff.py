import math

import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators.base import create_translator
from napari_medtrans.translators.disdiff import AdversarialSchedule

# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _model(**kw):
    torch.manual_seed(0)
    cfg = dict(preset="cpu", width=8, disc_width=8, diff_width=8, attr_dim=4)
    cfg.update(kw)
    return create_translator("disdiff", **cfg)


def _batch(seed=0, b=2, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, size, size, generator=g) * 2 - 1, torch.rand(b, 1, size, size, generator=g) * 2 - 1


def test_schedule_matches_eq3_and_ends_near_pure_noise():
    sch = AdversarialSchedule(4, 0.1, 20.0)
    g1 = 1 - math.exp(-0.1 / 4 - 19.9 * 1 / 32)
    assert float(sch.gammas[0]) == pytest.approx(g1)
    assert float(sch.alpha_bars[-1]) == pytest.approx(math.exp(-0.1 - 9.95))
    assert all(0 < float(g) < 1 for g in sch.gammas) and bool((sch.gammas[1:] > sch.gammas[:-1]).all())
    assert sch.levels(None) == [4, 3, 2, 1] and sch.levels(2) == [4, 1] and sch.levels(1) == [4]
    with pytest.raises(ValueError, match="steps"):
        sch.levels(5)


def test_forward_step_and_posterior_are_consistent():
    sch = AdversarialSchedule(4)
    x0 = torch.full((20000, 1, 1, 1), 0.5)
    s = torch.full((20000,), 2)
    g = torch.Generator().manual_seed(0)
    prev, xs = sch.q_pair(x0, s, torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g))
    direct = sch.q_sample(x0, s, torch.randn(x0.shape, generator=g))
    # two-stage sampling has the closed-form marginal of level 2
    assert float(xs.mean()) == pytest.approx(float(direct.mean()), abs=0.03)
    assert float(xs.std()) == pytest.approx(float(direct.std()), abs=0.03)
    # the posterior to level 0 returns x0 exactly
    out = sch.posterior_sample(x0[:3], xs[:3], s[:3], torch.zeros(3, dtype=torch.long), torch.randn(3, 1, 1, 1))
    torch.testing.assert_close(out, x0[:3])
    # the posterior to level 1 given the true x0 has the marginal of level 1
    post = sch.posterior_sample(x0, xs, s, s - 1, torch.randn(x0.shape, generator=g))
    assert float(post.std()) == pytest.approx(float(prev.std()), abs=0.03)


def test_translate_shapes_seed_and_reference():
    model = _model().eval()
    x, ref = _batch()
    assert model.spec.stochastic and model.spec.default_steps == 4 and not model.spec.paired
    with torch.no_grad():
        a = model.translate(x, generator=torch.Generator().manual_seed(1)).image
        b = model.translate(x, generator=torch.Generator().manual_seed(1)).image
        c = model.translate(x, generator=torch.Generator().manual_seed(2)).image
        d = model.translate(x, steps=2, generator=torch.Generator().manual_seed(1), reference=ref[:1]).image
    assert a.shape == x.shape and a.abs().max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


def test_training_step_lowers_the_generator_loss():
    model = _model().train()
    x_i, x_j = _batch()
    opt = torch.optim.Adam(model.generator_parameters(), lr=2e-3)
    first = None
    for _ in range(6):
        out = model.forward_train(x_i, x_j, generator=torch.Generator().manual_seed(0))
        losses = model.generator_losses(out)
        first = float(losses["total"]) if first is None else first
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
    assert {"diff_adv", "diff_cyc", "rec", "cyc", "content"} <= set(losses)
    assert float(losses["total"]) < first
    # the running mean attribute moved away from zero: inference needs no target image
    assert float(model.net.mean_attribute("T2").abs().sum()) > 0


def test_discriminator_losses_include_a_gradient_penalty_and_train():
    model = _model().train()
    out = model.forward_train(*_batch(), generator=torch.Generator().manual_seed(0))
    d = model.discriminator_losses(out)
    assert float(d["gp"]) > 0 and torch.isfinite(d["total"])
    opt = torch.optim.Adam(model.discriminator_parameters(), lr=5e-3)
    first = float(d["total"])
    for _ in range(5):
        loss = model.discriminator_losses(out)["total"]
        opt.zero_grad()
        loss.backward(retain_graph=True)
        opt.step()
    assert float(model.discriminator_losses(out)["total"]) < first


def test_ablations():
    x_i, x_j = _batch()
    plain = _model(use_diffusion=False)
    assert not plain.spec.stochastic and plain.spec.default_steps is None
    out = plain.forward_train(x_i, x_j)
    assert float(plain.generator_losses(out)["diff_cyc"]) == 0.0
    with torch.no_grad():
        torch.testing.assert_close(plain.eval().translate(x_i).image, plain.net.translate(x_i, "T1", "T2"))
    no_dc = _model(use_content_disc=False)
    assert float(no_dc.discriminator_losses(no_dc.forward_train(x_i, x_j))["content"]) == 0.0


def test_checkpoint_round_trip_keeps_the_mean_attribute(tmp_path):
    from napari_medtrans.translators.checkpoint import load_translator, save_checkpoint

    model = _model().train()
    model.forward_train(*_batch())
    model.eval()
    path = tmp_path / "disdiff.safetensors"
    save_checkpoint(model, path)
    again = load_translator(path).eval()
    torch.testing.assert_close(again.net.mean_attribute("T2"), model.net.mean_attribute("T2"))
    x = _batch()[0]
    with torch.no_grad():
        torch.testing.assert_close(again.translate(x, generator=torch.Generator().manual_seed(3)).image,
                                   model.translate(x, generator=torch.Generator().manual_seed(3)).image)


def test_bad_config_is_named():
    with pytest.raises(UnknownChoiceError):
        _model(preset="big")
    with pytest.raises(ValueError, match="source"):
        _model(source="T2")
    with pytest.raises(ValueError, match="n_steps"):
        _model(n_steps=0)
    with pytest.raises(UnknownChoiceError):
        _model(lambdas={"foo": 1.0})
    with pytest.raises(ValueError, match="multiples of 4"):
        _model().translate(torch.zeros(1, 1, 18, 18))
