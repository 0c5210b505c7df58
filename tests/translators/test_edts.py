"""EDTS-Trans translator: Eq. 1-4 and 9-15 through the Translator protocol, the registry and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError, WeightsError
from napari_medtrans.translators import create_translator, list_translators, load_translator, save_checkpoint
from napari_medtrans.translators.attention import TransformerBlock
from napari_medtrans.translators.edts import (
    PAPER_GFLOPS,
    PAPER_PARAMS_M,
    EdtsTranslator,
    format_complexity,
    model_complexity,
)

TINY = dict(preset="cpu", width=4)


def tiny(**kw) -> EdtsTranslator:
    torch.manual_seed(0)
    return create_translator("edts-trans", **{**TINY, **kw}).eval()


def batch(b=2, c=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g) * 2 - 1


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_registered_with_a_stochastic_spec():
    assert "edts-trans" in list_translators()
    m = tiny()
    s = m.spec
    assert s.method == "edts-trans" and s.stochastic and s.paired
    assert s.default_steps == 10 and s.size_multiple == 4
    assert s.maps == ("regression", "diffusion", "tsm")
    assert create_translator("edts-trans", **TINY, default_steps=7).spec.default_steps == 7


def test_translate_returns_image_and_maps():
    m = tiny()
    out = m.translate(batch(), steps=3, generator=seeded(0))
    assert out.image.shape == (2, 1, 32, 32)
    assert set(out.maps) == {"regression", "diffusion", "tsm"}
    for v in (out.image, *out.maps.values()):
        assert v.shape == (2, 1, 32, 32) and torch.isfinite(v).all()
        assert float(v.min()) >= -1 and float(v.max()) <= 1
    assert float(out.maps["tsm"].min()) >= 0


def test_regression_residual_and_dynamic_fusion():
    """Eq. 12: a zero last convolution leaves T1; Eq. 4: the image is M * diffusion + (1 - M) * regression."""
    m = tiny()
    with torch.no_grad():
        m.regression.head.weight.zero_()
        m.regression.head.bias.zero_()
    x = batch()
    out = m.translate(x, steps=2, generator=seeded(1))
    torch.testing.assert_close(out.maps["regression"], x)
    mask, reg, diff = out.maps["tsm"], out.maps["regression"], out.maps["diffusion"]
    torch.testing.assert_close(out.image, mask * diff + (1 - mask) * reg)
    assert not torch.allclose(out.image, reg) and not torch.allclose(out.image, diff)


def test_steps_and_seeds():
    m = tiny()
    x = batch()
    a2 = m.translate(x, steps=2, generator=seeded(5)).image
    a5 = m.translate(x, steps=5, generator=seeded(5)).image
    again = m.translate(x, steps=5, generator=seeded(5)).image
    other = m.translate(x, steps=5, generator=seeded(6)).image
    assert not torch.allclose(a2, a5)
    assert torch.equal(a5, again)
    assert not torch.allclose(a5, other)
    # steps=None is the spec's default
    torch.testing.assert_close(m.translate(x, generator=seeded(5)).image,
                               m.translate(x, steps=m.spec.default_steps, generator=seeded(5)).image)
    with pytest.raises(ValueError, match="steps"):
        m.translate(x, steps=0)


def test_ddpm_sampler_runs_and_is_seeded():
    m = tiny(sampler="ddpm")
    x = batch(b=1)
    a = m.translate(x, steps=4, generator=seeded(2)).image
    assert torch.equal(a, m.translate(x, steps=4, generator=seeded(2)).image)
    assert not torch.allclose(a, m.translate(x, steps=4, generator=seeded(3)).image)


@pytest.mark.parametrize("mode", ["dynamic", "none", "hard"])
def test_ablation_flags(mode):
    m = tiny(mask=mode)
    x = batch(b=1)
    out = m.translate(x, steps=2, generator=seeded(0))
    assert out.image.shape == (1, 1, 32, 32) and torch.isfinite(out.image).all()
    img, reg, diff, tsm = out.image, out.maps["regression"], out.maps["diffusion"], out.maps["tsm"]
    if mode == "none":  # Table IV "w/o M": the diffusion output is the result, its input has no mask channel
        assert m.denoiser.stem.in_channels == 2
        torch.testing.assert_close(img, diff)
    else:
        assert m.denoiser.stem.in_channels == 3
    if mode == "hard":  # Table IV "Th-0.4": diffusion where M > 0.4, regression elsewhere
        hard = tsm > 0.4
        torch.testing.assert_close(img[hard], diff[hard])
        torch.testing.assert_close(img[~hard], reg[~hard].clamp(-1, 1))
    losses = m.train().training_outputs(x, batch(b=1, seed=1))
    assert torch.isfinite(losses["fused"]).all()


def test_training_pass_reaches_both_networks():
    m = tiny().train()
    x, y = batch(), batch(seed=3)
    out = m(x, target=y)
    assert set(out) >= {"regression", "diffusion", "fused", "tsm", "t"}
    assert out["t"].shape == (2,) and int(out["t"].max()) < 1000
    (out["diffusion"] - y).abs().mean().backward()
    # the diffusion loss trains the DiffUNet and, through its condition T2_bar, the regression network
    assert m.denoiser.head.weight.grad.abs().sum() > 0
    assert m.regression.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="target"):
        m(x, target=y[:, :, :16])


def test_checkpoint_round_trip(tmp_path):
    m = tiny(mask="hard", tsm_window=5)
    path = save_checkpoint(m, tmp_path / "edts.safetensors")
    back = load_translator(path)
    assert isinstance(back, EdtsTranslator)
    assert back.config == m.config and back.spec == m.spec
    x = batch(b=1)
    torch.testing.assert_close(back.eval().translate(x, steps=3, generator=seeded(9)).image,
                               m.translate(x, steps=3, generator=seeded(9)).image)
    assert path.stat().st_size < 2_000_000  # the TSM backbone is never part of the checkpoint


def test_two_inputs_use_a_projected_residual():
    m = tiny(inputs=["T1", "FLAIR"])
    assert m.input_proj is not None
    out = m.translate(batch(c=2), steps=2, generator=seeded(0))
    assert out.image.shape == (2, 1, 32, 32)


def test_bad_inputs_and_config():
    m = tiny()
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        m.translate(batch(c=2), steps=2)
    with pytest.raises(ValueError, match="multiples of 4"):
        m.translate(torch.zeros(1, 1, 30, 30), steps=2)
    with pytest.raises(UnknownChoiceError, match="dynamic"):
        create_translator("edts-trans", **TINY, mask="soft")
    with pytest.raises(UnknownChoiceError, match="analytic"):
        create_translator("edts-trans", **TINY, tsm_backbone="vgg19")
    with pytest.raises(UnknownChoiceError, match="paper"):
        create_translator("edts-trans", preset="huge")
    with pytest.raises(ValueError, match="even"):
        create_translator("edts-trans", **{**TINY, "width": 5})
    with pytest.raises(ValueError, match="default_steps"):
        create_translator("edts-trans", **TINY, default_steps=2000)


def test_vgg_backbone_without_weights_says_how_to_import(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path))
    m = tiny(tsm_backbone="vgg16-imagenet")
    with pytest.raises(WeightsError, match="medtrans weights import"):
        m.translate(batch(b=1), steps=1)


def test_transformer_block_is_eq13():
    """x_out = FFN(LN(x + ATTN(LN(x)))) + x: with the FFN's output zeroed the block is the identity."""
    torch.manual_seed(0)
    blk = TransformerBlock(8, 2)
    x = torch.randn(2, 8, 6, 6)
    want = blk.ffn(blk.norm2(x + blk.attn(blk.norm1(x)))) + x
    torch.testing.assert_close(blk(x), want)
    with torch.no_grad():
        blk.ffn.project.weight.zero_()
        blk.ffn.project.bias.zero_()
    torch.testing.assert_close(blk(x), x)


def test_paper_size_matches_table_ii():
    c = model_complexity()
    assert c["params"] / 1e6 == pytest.approx(PAPER_PARAMS_M, rel=0.02)
    assert c["flops_one_pass"] / 1e9 == pytest.approx(PAPER_GFLOPS, rel=0.02)
    assert c["config"]["depth"] == 4 and c["size"] == 256
    text = format_complexity(c)
    assert "33.15" in text and "102.4" in text and "50 sampling steps" in text
    small = model_complexity(preset="cpu", size=64)
    assert small["params"] < c["params"] / 100 and small["flops_regression"] > 0


def test_engine_translates_a_volume():
    from napari_medtrans.core.engine import translate_volume
    from napari_medtrans.core.volume import Volume

    m = tiny()
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((32, 32, 3)).astype(np.float32) * 100, np.eye(4), modality="T1")
    res = translate_volume(vol, m, device="cpu", steps=2, seed=0, batch_size=3)
    assert res.volume.data.shape == (32, 32, 3) and res.volume.synthetic
    assert {"regression", "diffusion", "tsm"} <= set(res.maps)
    again = translate_volume(vol, m, device="cpu", steps=2, seed=0, batch_size=3)
    np.testing.assert_array_equal(res.volume.data, again.volume.data)
