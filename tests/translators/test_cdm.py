"""CDM translator: MRM, MDN (Eq. 2-3), C-UNet with Condition Embedding, registry, checkpoints, the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators import create_translator, list_translators, load_translator, save_checkpoint
from napari_medtrans.translators.cdm import (
    ConditionEmbedding,
    CdmTranslator,
    format_complexity,
    model_complexity,
    random_patch_mask,
)

#: 32x32 slices, a 2-level C-UNet of width 4, 4-pixel patches: size multiple 4.
TINY = dict(preset="cpu", width=4, depth=2, rep_dim=16, mrm_patch=4, mrm_width=8, mdn_width=16, mdn_blocks=2,
            src_width=4, src_levels=2)


def tiny(**kw) -> CdmTranslator:
    torch.manual_seed(0)
    return create_translator("cdm", **{**TINY, **kw}).eval()


def batch(b=2, c=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g) * 2 - 1


def seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU threads only wait."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_registered_multi_input_multi_output_spec():
    assert "cdm" in list_translators()
    s = tiny().spec
    assert s.method == "cdm" and s.inputs == ("T1", "T2") and s.outputs == ("T1c", "FLAIR")
    assert s.stochastic and s.paired and s.default_steps == 30 and s.size_multiple == 4
    paper = create_translator("cdm", preset="paper", width=4, mdn_width=8, rep_dim=8, mrm_width=4, src_width=4)
    assert paper.spec.size_multiple == 16 and paper.spec.default_steps == 30
    m1 = tiny(ablation="M1")
    assert not m1.spec.stochastic and m1.spec.default_steps is None
    assert m1.mrm is None and m1.mdn is None
    assert m1.config["condition"] is False
    m2 = tiny(ablation="m2")
    assert m2.config["decouple"] is False and len(m2.mdn.decouple) == 1
    assert len(tiny().mdn.decouple) == 2  # one decoupling layer per target modality (Fig. 3a)


def test_translate_shapes_and_range():
    m = tiny()
    out = m.translate(batch(), steps=5, generator=seeded(0))
    assert out.image.shape == (2, 2, 32, 32) and out.maps == {}
    assert torch.isfinite(out.image).all()
    assert float(out.image.min()) >= -1 and float(out.image.max()) <= 1
    three = tiny(outputs=["T1c", "FLAIR", "PD"])
    assert len(three.mdn.decouple) == 3
    assert three.translate(batch(b=1), steps=2, generator=seeded(0)).image.shape == (1, 3, 32, 32)


def test_seed_determinism_and_steps():
    m = tiny()
    x = batch()
    a = m.translate(x, steps=10, generator=seeded(5)).image
    assert torch.equal(a, m.translate(x, steps=10, generator=seeded(5)).image)
    assert not torch.allclose(a, m.translate(x, steps=10, generator=seeded(6)).image)
    assert not torch.allclose(a, m.translate(x, steps=3, generator=seeded(5)).image)
    # steps=None is N_sampling = 30 (Table 4)
    torch.testing.assert_close(m.translate(x, generator=seeded(1)).image,
                               m.translate(x, steps=30, generator=seeded(1)).image)
    with pytest.raises(ValueError, match="steps"):
        m.translate(x, steps=0)
    # ablation M1 samples nothing: no seed dependence
    m1 = tiny(ablation="M1")
    torch.testing.assert_close(m1.translate(x, generator=seeded(1)).image, m1.translate(x, generator=seeded(2)).image)


def test_one_ddim_step_is_the_mdn_prediction():
    """Eq. 3 with N_sampling = 1: y_0 is the MDN's prediction from the starting noise at t = T - 1."""
    m = tiny()
    x = batch(b=2)
    y_T = torch.randn(2, 16, generator=seeded(3))
    got = m.sample_distribution(x, steps=1, x_T=y_T)
    t = torch.full((2,), 999, dtype=torch.long)
    with torch.no_grad():
        want = m.mdn(y_T, t, m.mdn.encode_source(x))
    torch.testing.assert_close(got, want)
    # translate = the C-UNet guided by that sample, the noise drawn from the generator
    noise = torch.randn((2, 16), generator=seeded(4))
    with torch.no_grad():
        want_img = m.synthesize(x, m.sample_distribution(x, steps=1, x_T=noise)).clamp(-1, 1)
    torch.testing.assert_close(m.translate(x, steps=1, generator=seeded(4)).image, want_img)


def test_mdn_condition_source_versus_eq3_as_printed():
    x1, x2 = batch(b=2, seed=1), batch(b=2, seed=2)
    src = tiny()
    assert not torch.allclose(src.sample_distribution(x1, steps=4, generator=seeded(0)),
                              src.sample_distribution(x2, steps=4, generator=seeded(0)))
    plain = tiny(mdn_condition="none")
    assert plain.mdn.source is None
    torch.testing.assert_close(plain.sample_distribution(x1, steps=4, generator=seeded(0)),
                               plain.sample_distribution(x2, steps=4, generator=seeded(0)))


def test_condition_embedding_fuses_feature_and_distribution():
    torch.manual_seed(0)
    ce = ConditionEmbedding(8, 6)
    h, y = torch.randn(2, 8, 5, 5), torch.randn(2, 6)
    want = ce.feature(h) + ce.distribution(y)[:, :, None, None]
    torch.testing.assert_close(ce(h, y), want)
    # branches as the paper lists them: LayerNorm, SiLU, 1x1 conv / Linear, SiLU, Linear
    assert [type(l).__name__ for l in ce.feature] == ["LayerNorm2d", "SiLU", "Conv2d"]
    assert ce.feature[2].kernel_size == (1, 1)
    assert [type(l).__name__ for l in ce.distribution] == ["Linear", "SiLU", "Linear"]
    with pytest.raises(ValueError, match="y_0"):
        ce(h)
    plain = ConditionEmbedding(8, None)
    assert plain.distribution is None
    torch.testing.assert_close(plain(h), plain.feature(h))


def test_every_scale_is_conditioned():
    m = tiny()
    assert len(m.cunet.embed) == m.config["depth"] + 1  # every encoder scale and the bottleneck
    x = batch(b=1)
    y_a, y_b = torch.randn(1, 16, generator=seeded(0)), torch.randn(1, 16, generator=seeded(1))
    with torch.no_grad():
        assert not torch.allclose(m.synthesize(x, y_a), m.synthesize(x, y_b))
        # with the distribution branches at zero the condition has no effect
        for ce in m.cunet.embed:
            ce.distribution[2].weight.zero_()
            ce.distribution[2].bias.zero_()
        torch.testing.assert_close(m.synthesize(x, y_a), m.synthesize(x, y_b))


def test_random_patch_mask_per_modality():
    mask = random_patch_mask(3, 2, (4, 4), 0.6, generator=seeded(0))
    assert mask.shape == (3, 2, 4, 4) and mask.dtype == torch.bool
    assert (mask.flatten(2).sum(-1) == 10).all()  # round(0.6 * 16) patches of every slice and modality
    assert not torch.equal(mask[:, 0], mask[:, 1])  # each modality is masked separately
    assert torch.equal(mask, random_patch_mask(3, 2, (4, 4), 0.6, generator=seeded(0)))
    assert (random_patch_mask(1, 1, (2, 2), 0.01).sum() == 1)
    with pytest.raises(ValueError, match="ratio"):
        random_patch_mask(1, 1, (2, 2), 1.0)


def test_mrm_masks_restores_and_represents():
    m = tiny()
    y = batch()
    mask = random_patch_mask(2, 2, (8, 8), 0.5, generator=seeded(0))
    with torch.no_grad():
        m.mrm.mask_token.copy_(torch.tensor([0.25, -0.75]))
        masked = m.mrm.apply_mask(y, mask)
    pix = mask.repeat_interleave(4, -2).repeat_interleave(4, -1)
    torch.testing.assert_close(masked[~pix], y[~pix])
    assert torch.all(masked[:, 0][pix[:, 0]] == 0.25) and torch.all(masked[:, 1][pix[:, 1]] == -0.75)
    out = m.train().training_outputs(batch(c=2, seed=1), y, stage="mrm", patch_mask=mask)
    assert out["pred"].shape == y.shape and torch.equal(out["mask"], mask) and out["y0"].shape == (2, 16)
    y0 = m.represent(y)  # FE's output, y_0: one vector per slice, zero mean and unit variance
    assert y0.shape == (2, 16)
    torch.testing.assert_close(y0.mean(1), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(y0.var(1, unbiased=False), torch.ones(2), atol=1e-3, rtol=0)


def test_training_passes_train_only_their_network():
    x, y = batch(), batch(seed=4)
    for stage, trained in (("mrm", "mrm"), ("mdn", "mdn"), ("cunet", "cunet")):
        m = tiny().train()
        out = m(x, target=y, stage=stage)
        loss = sum(v.float().pow(2).mean() for k, v in out.items() if k in ("pred",))
        loss.backward()
        for name in ("mrm", "mdn", "cunet"):
            grads = [p.grad for p in getattr(m, name).parameters()]
            has = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert has == (name == trained), (stage, name)
    m = tiny().train()
    out = m(x, target=y, stage="mdn", t=torch.tensor([0, 999]), noise=torch.zeros(2, 16))
    assert out["t"].tolist() == [0, 999] and out["pred"].shape == out["y0"].shape == (2, 16)
    sampled = m(x, target=y, stage="cunet", condition="sampled", steps=2)
    assert sampled["pred"].shape == (2, 2, 32, 32) and sampled["y0"].shape == (2, 16)
    with pytest.raises(ValueError, match="target"):
        m(x, target=y[:, :1])
    with pytest.raises(UnknownChoiceError, match="mrm"):
        m(x, target=y, stage="all")
    with pytest.raises(ValueError, match="M1"):
        tiny(ablation="M1")(x, target=y, stage="mdn")
    out = tiny(ablation="M1").train()(x, target=y, stage="cunet")
    assert set(out) == {"pred"}


@pytest.mark.parametrize("kw", [{}, {"ablation": "M2", "sampler": "ddpm"}, {"ablation": "M1"}])
def test_checkpoint_round_trip(tmp_path, kw):
    m = tiny(**kw)
    path = save_checkpoint(m, tmp_path / "cdm.safetensors")
    back = load_translator(path)
    assert isinstance(back, CdmTranslator)
    assert back.config == m.config and back.spec == m.spec
    x = batch(b=1)
    torch.testing.assert_close(back.translate(x, steps=4, generator=seeded(9)).image,
                               m.translate(x, steps=4, generator=seeded(9)).image)


def test_bad_inputs_and_config():
    m = tiny()
    with pytest.raises(ValueError, match=r"\[B, 2, H, W\]"):
        m.translate(batch(c=1), steps=2)
    with pytest.raises(ValueError, match="multiples of 4"):
        m.translate(torch.zeros(1, 2, 30, 30), steps=2)
    with pytest.raises(UnknownChoiceError, match="paper"):
        create_translator("cdm", preset="huge")
    with pytest.raises(UnknownChoiceError, match="M1"):
        create_translator("cdm", **TINY, ablation="M3")
    with pytest.raises(UnknownChoiceError, match="source"):
        create_translator("cdm", **TINY, mdn_condition="image")
    with pytest.raises(ValueError, match="default_steps"):
        create_translator("cdm", **TINY, default_steps=2000)
    with pytest.raises(ValueError, match="width"):
        create_translator("cdm", **{**TINY, "width": 0})


def test_complexity_counts_every_network():
    c = model_complexity(preset="cpu", size=64)
    assert c["params"] == c["params_cunet"] + c["params_mrm"] + c["params_mdn"]
    assert c["flops_cunet"] > 100 * c["flops_mdn_step"] > 0  # the diffusion runs on a vector, not the image
    assert "30 sampling steps" in format_complexity(c)
    m1 = model_complexity(preset="cpu", size=64, ablation="M1")
    assert m1["params_mdn"] == 0 and m1["flops_mdn_step"] == 0


def test_engine_returns_two_output_volumes():
    from napari_medtrans.core.engine import translate_volume
    from napari_medtrans.core.volume import Volume

    rng = np.random.default_rng(0)
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    vols = {mod: Volume(rng.random((32, 32, 3)).astype(np.float32) * 100, affine, modality=mod)
            for mod in ("T1", "T2")}
    m = tiny()
    res = translate_volume(vols, m, device="cpu", steps=3, seed=7, axis=2)
    assert set(res.outputs) == {"T1c", "FLAIR"}
    for mod, v in res.outputs.items():
        assert v.modality == mod and v.synthetic and v.shape == (32, 32, 3)
        np.testing.assert_array_equal(v.affine, affine)
        assert np.isfinite(v.data).all()
    assert res.volume is res.outputs["T1c"]
    again = translate_volume(vols, m, device="cpu", steps=3, seed=7, axis=2)
    np.testing.assert_array_equal(again.outputs["FLAIR"].data, res.outputs["FLAIR"].data)
    assert not np.allclose(res.outputs["T1c"].data, res.outputs["FLAIR"].data)
