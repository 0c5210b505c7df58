"""MRNet translator: Eq. 1-5 (SAM adaptors, SoftClamp, multi-mask correction), the SAM-style ViT, registry,
seeds and checkpoints."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from napari_medtrans.core.errors import CheckpointError, UnknownChoiceError
from napari_medtrans.translators import create_translator, list_translators, load_translator, save_checkpoint
from napari_medtrans.translators.mrnet import (
    MRNetTranslator,
    SamAdaptor,
    SoftClamp,
    apply_masks,
    count_parameters,
    masked_image,
    soft_clamp,
)
from napari_medtrans.translators.vit import SamViT, build_sam_vit, load_sam_encoder_weights


def tiny(**kw):
    return create_translator("mrnet", **{"width": 4, "depth": 3, **kw})


def batch(b=2, c=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g) * 2 - 1


# -- Eq. 3 ---------------------------------------------------------------------------------------------
def test_soft_clamp_values_and_slopes():
    z = torch.tensor([-2.0, -0.5, 0.0, 0.25, 1.0, 1.5, 11.0], requires_grad=True)
    s = soft_clamp(z)  # alpha = 0.001, the paper's
    expected = torch.tensor([-0.002, -0.0005, 0.0, 0.25, 1.0, 1.0005, 1.01])
    torch.testing.assert_close(s, expected)
    z2 = torch.tensor([-2.0, -0.5, 0.25, 0.75, 1.5, 11.0], requires_grad=True)  # away from the kinks
    soft_clamp(z2).sum().backward()
    torch.testing.assert_close(z2.grad, torch.tensor([0.001, 0.001, 1.0, 1.0, 0.001, 0.001]))
    torch.testing.assert_close(SoftClamp(0.1)(torch.tensor([-1.0, 3.0])), torch.tensor([-0.1, 1.2]))


def test_soft_clamp_sits_on_the_bottleneck():
    m = tiny()
    seen = {}
    m.net.clamp.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0], out=out))
    m.translate(batch(size=64))  # one view of the default tile (64 x 64)
    assert m.net.clamp.alpha == pytest.approx(0.001)
    assert seen["inp"].shape[1] == m.net.downs[-1].out_channels + m.net.adaptors[-1].conv.out_channels
    assert seen["inp"].shape[-1] == 64 // 2**3
    torch.testing.assert_close(seen["out"], soft_clamp(seen["inp"]))


# -- Eq. 4-5 -------------------------------------------------------------------------------------------
def test_mask_products_follow_eq4_and_eq5():
    y0 = torch.tensor([[[[0.8, -0.4], [0.2, -1.0]]]])
    calls = []

    def head(c):
        def psi(y):
            calls.append(y.clone())
            return c * y + 0.3

        return psi

    ys, masks = apply_masks(y0, [head(2.0), head(-1.0), head(0.5)])
    m1 = torch.sigmoid(2.0 * y0 + 0.3)
    y1 = y0 * m1
    m2 = torch.sigmoid(-1.0 * y1 + 0.3)  # M_2 is computed from y_hat_1, not from y_hat_0
    y2 = y1 * m1 * m2  # Eq. 5: the running product M_1 M_2
    m3 = torch.sigmoid(0.5 * y2 + 0.3)
    y3 = y2 * m1 * m2 * m3
    assert len(ys) == 4 and len(masks) == 3
    torch.testing.assert_close(calls[1], y1)
    torch.testing.assert_close(calls[2], y2)
    for got, want in zip(masks, (m1, m2, m3)):
        torch.testing.assert_close(got, want)
    for got, want in zip(ys, (y0, y1, y2, y3)):
        torch.testing.assert_close(got, want)
    # and it is not the single-mask-per-step reading y_hat_k = y_hat_{k-1} * M_k
    assert not torch.allclose(ys[2], y1 * m2)


def test_unit_mask_space_discards_towards_background():
    """mask_space="unit": Eq. 4-5 act on (y_hat_0 + 1) / 2, so a closed mask darkens a pixel to background (-1)
    where the literal form pulls it to mid-grey (0)."""
    y0 = torch.tensor([[[[0.8, -0.4], [0.2, -1.0]]]])

    def shut(y):  # masks of 0 everywhere (sigmoid of a very low logit)
        return torch.full_like(y, -50.0)

    signed, _ = apply_masks(y0, [shut, shut])
    unit, masks = apply_masks(y0, [shut, shut], space="unit")
    torch.testing.assert_close(masked_image(signed[-1], "signed"), torch.zeros_like(y0))
    torch.testing.assert_close(masked_image(unit[-1], "unit"), torch.full_like(y0, -1.0))
    # the products of Eq. 5 are the same, on u_0 = (y_hat_0 + 1) / 2
    half = lambda y: torch.zeros_like(y)  # noqa: E731  (masks of exactly 0.5)
    ys, ms = apply_masks(y0, [half, half], space="unit")
    u0 = (y0 + 1) / 2
    torch.testing.assert_close(ys[0], u0)
    torch.testing.assert_close(ys[2], u0 * 0.5 * 0.25)  # y_hat_2 = u_0 M_1^2 M_2
    with pytest.raises(UnknownChoiceError):
        apply_masks(y0, [half], space="log")


def test_unit_mask_space_model_trains_saves_and_reloads(tmp_path):
    m = tiny(mask_space="unit").eval()
    assert m.config["mask_space"] == "unit" and tiny().config["mask_space"] == "signed"
    x = batch()
    with torch.no_grad():
        det = m(x, details=True)
        out = m.translate(x)
    assert 0 <= float(det["ys"][-1].min()) and float(det["ys"][-1].max()) <= 1  # Eq. 9 sees [0, 1] features
    torch.testing.assert_close(out.image, (2 * det["ys"][-1] - 1).clamp(-1, 1))
    path = save_checkpoint(m, tmp_path / "unit.safetensors")
    back = load_translator(path)
    assert back.config["mask_space"] == "unit"
    with torch.no_grad():
        torch.testing.assert_close(back.translate(x).image, out.image)
    with pytest.raises(UnknownChoiceError, match="mask space"):
        tiny(mask_space="log")


@pytest.mark.parametrize("n", [1, 2, 7])
def test_translate_returns_image_and_masks(n):
    m = tiny(n_masks=n).eval()
    x = batch()
    with torch.no_grad():
        out = m.translate(x)
        det = m(x, details=True)
    assert out.image.shape == (2, 1, 32, 32)
    assert m.spec.maps == ("masks",) and out.maps["masks"].shape == (2, n, 32, 32)
    assert float(out.maps["masks"].min()) >= 0 and float(out.maps["masks"].max()) <= 1
    assert len(det["ys"]) == n + 1 and len(det["masks"]) == n
    torch.testing.assert_close(out.image, det["ys"][-1].clamp(-1, 1))
    torch.testing.assert_close(out.maps["masks"], torch.cat(det["masks"], 1))
    # the decoder output ends with tanh
    assert float(det["ys"][0].abs().max()) <= 1.0


def test_two_inputs_and_outputs():
    m = tiny(inputs=["T1", "FLAIR"], outputs=["T2", "PD"]).eval()
    out = m.translate(batch(c=2, size=16))
    assert out.image.shape == (2, 2, 16, 16) and out.maps["masks"].shape == (2, 4, 16, 16)


# -- Eq. 1-2 -------------------------------------------------------------------------------------------
def test_adaptor_equals_resize_then_convolve():
    torch.manual_seed(0)
    ad = SamAdaptor(6, 3)
    feat = torch.randn(2, 6, 8, 8)
    for size in [(16, 16), (4, 4), (8, 8), (12, 20)]:
        literal = ad.conv(F.interpolate(feat, size=size, mode="bilinear", align_corners=False))  # C_i(B(F, s_i))
        torch.testing.assert_close(ad(feat, size), literal, atol=1e-5, rtol=1e-5)


def test_encoder_stages_concatenate_sam_features():
    m = tiny(adaptor_ratio=0.5)
    seen = []
    for t in m.net.transforms:
        t.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    m.translate(batch(size=64))  # one view of the default tile (64 x 64)
    # stage i: c_i = 4 * 2**i own channels + c_i / 2 SAM channels, at 64 / 2**(i+1)
    assert [tuple(s[1:]) for s in seen] == [(6, 32, 32), (12, 16, 16), (24, 8, 8)]
    # the SAM features reach the output: changing the encoder changes the translation
    x = batch()
    a = m.translate(x).image
    with torch.no_grad():
        m.net.encoder.neck[2].weight.mul_(3.0)
    assert not torch.allclose(a, m.translate(x).image)


# -- registry, presets, config -----------------------------------------------------------------------
def test_registered_with_paper_defaults():
    assert "mrnet" in list_translators()
    m = create_translator("mrnet")
    assert isinstance(m, MRNetTranslator) and m.spec.method == "mrnet" and not m.spec.stochastic
    assert m.config["n_masks"] == 2 and m.config["alpha"] == 0.001 and m.config["encoder"] == "tiny"
    assert m.spec.size_multiple == 2 ** m.config["depth"]
    with torch.device("meta"), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        paper = create_translator("mrnet", preset="paper")
    assert any("random weights" in str(x.message) for x in w)
    assert paper.config["depth"] == 8 and paper.config["width"] == 64 and paper.config["encoder"] == "sam_vit_b"
    counts = count_parameters(paper)
    assert counts["encoder"] == counts["frozen"] and 85e6 < counts["encoder"] < 95e6  # SAM ViT-B: 89.7 M


def test_frozen_encoder_gets_no_gradient_and_stays_in_eval():
    m = tiny(freeze_encoder=True, sam_pretrained="test").train()
    assert not m.net.encoder.training and m.net.downs.training
    det = m(batch(), details=True)
    det["image"].sum().backward()
    assert all(p.grad is None for p in m.net.encoder.parameters())
    assert m.net.downs[0].weight.grad.abs().sum() > 0
    free = tiny().train()
    free(batch(), details=True)["image"].sum().backward()
    assert free.net.encoder.patch_embed.proj.weight.grad.abs().sum() > 0


def test_bad_config_and_inputs():
    with pytest.raises(ValueError, match="n_masks"):
        tiny(n_masks=0)
    with pytest.raises(ValueError, match="n_masks"):
        tiny(n_masks=8)
    with pytest.raises(UnknownChoiceError):
        tiny(preset="huge")
    with pytest.raises(UnknownChoiceError):
        tiny(encoder="vit_h")
    with pytest.raises(ValueError, match="sam_image_size"):
        tiny(sam_image_size=60)
    m = tiny()
    with pytest.raises(ValueError, match="multiples of 8"):
        m.translate(batch(size=20))
    with pytest.raises(ValueError, match="shape"):
        m.translate(batch(c=2))


def test_same_seed_same_model_other_seed_other_model():
    x = batch()
    torch.manual_seed(3)
    a = tiny().eval().translate(x).image
    torch.manual_seed(3)
    b = tiny().eval().translate(x).image
    torch.manual_seed(4)
    c = tiny().eval().translate(x).image
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_checkpoint_round_trip(tmp_path):
    m = tiny(n_masks=3, mask_width=4).eval()
    path = save_checkpoint(m, tmp_path / "mrnet.safetensors")
    back = load_translator(path)
    assert isinstance(back, MRNetTranslator) and back.config == m.config and back.spec == m.spec
    x = batch()
    a, b = m.translate(x), back.translate(x)
    torch.testing.assert_close(a.image, b.image)
    torch.testing.assert_close(a.maps["masks"], b.maps["masks"])


# -- the SAM-style ViT -------------------------------------------------------------------------------
def test_vit_shapes_and_sizes():
    enc = build_sam_vit("tiny")
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, 32, 8, 8)
    assert enc(torch.randn(2, 3, 48, 80)).shape == (2, 32, 6, 10)  # position embedding resized
    with torch.device("meta"):
        b = build_sam_vit("sam_vit_b")
    assert sum(p.numel() for p in b.parameters()) == 89_670_912  # SAM ViT-B image encoder


def test_window_attention_covering_the_grid_equals_global_attention():
    torch.manual_seed(0)
    glob = SamViT(img_size=32, patch_size=4, embed_dim=16, depth=1, num_heads=2, window_size=8,
                  global_attn_indexes=[0], out_chans=8)
    win = SamViT(img_size=32, patch_size=4, embed_dim=16, depth=1, num_heads=2, window_size=8,
                 global_attn_indexes=[], out_chans=8)
    for p in glob.parameters():
        torch.nn.init.normal_(p, std=0.3)
    win.load_state_dict(glob.state_dict())  # an 8x8 window on an 8x8 grid has the same table sizes
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(win(x), glob(x), atol=1e-5, rtol=1e-4)
    # a window that does not divide the grid is padded, and differs from global attention
    small = SamViT(img_size=32, patch_size=4, embed_dim=16, depth=1, num_heads=2, window_size=3,
                   global_attn_indexes=[], out_chans=8)
    assert small(x).shape == (1, 8, 8, 8)


def test_relative_positions_make_attention_position_aware():
    torch.manual_seed(0)
    enc = SamViT(img_size=16, patch_size=4, embed_dim=8, depth=1, num_heads=1, window_size=0,
                 global_attn_indexes=[0], out_chans=4)
    x = torch.randn(1, 3, 16, 16)
    a = enc(x)
    with torch.no_grad():
        enc.blocks[0].attn.rel_pos_h.normal_(std=1.0)
    assert not torch.allclose(a, enc(x))


def test_sam_checkpoint_loads_by_key_mapping(tmp_path):
    torch.manual_seed(1)
    src = build_sam_vit("tiny")
    state = {f"image_encoder.{k}": v for k, v in src.state_dict().items()}
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 4)
    state["prompt_encoder.pe_layer.gaussian"] = torch.zeros(2, 4)
    path = tmp_path / "sam_tiny.pth"
    torch.save(state, path)
    dst = load_sam_encoder_weights(build_sam_vit("tiny"), path)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(dst(x), src(x))
    m = tiny(sam_weights=str(path), freeze_encoder=True)
    torch.testing.assert_close(m.net.encoder(x), src(x))
    assert m.config["sam_weights"] is None and m.config["sam_pretrained"] == "sam_tiny.pth"
    with pytest.raises(CheckpointError, match="another size"):
        load_sam_encoder_weights(build_sam_vit("tiny", embed_dim=32), path)
    with pytest.raises(CheckpointError, match="not found"):
        load_sam_encoder_weights(build_sam_vit("tiny"), tmp_path / "nope" / "sam.pth")
    torch.save({"something.else": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no SAM image-encoder weights"):
        load_sam_encoder_weights(build_sam_vit("tiny"), tmp_path / "other.pth")


def test_engine_translates_a_volume():
    import numpy as np

    from napari_medtrans.core.engine import translate_volume

    m = tiny().eval()
    data = np.random.default_rng(0).random((30, 27, 3)).astype(np.float32)
    res = translate_volume(data, m, seed=0, batch_size=2)
    assert res.volume.shape == (30, 27, 3) and np.isfinite(res.volume.data).all()
    assert {"masks_0", "masks_1"} <= set(res.maps)
