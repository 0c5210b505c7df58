"""The baselines: plain U-Net regression and pix2pix (U-Net generator + 70x70 PatchGAN)."""

import pytest
import torch
from torch import nn

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators import create_translator, list_translators
from napari_medtrans.translators.blocks import (
    ConvNormAct,
    PatchGANDiscriminator,
    Pix2PixUNet,
    UNet,
    make_act,
    make_norm,
    patchgan_receptive_field,
)

SMALL = {"unet": dict(width=8, depth=3), "pix2pix": dict(width=8, depth=4)}


# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_both_baselines_are_registered():
    assert {"unet", "pix2pix"} <= set(list_translators())


@pytest.mark.parametrize("method", ["unet", "pix2pix"])
@pytest.mark.parametrize("norm", ["batch", "instance", "group"])
def test_small_model_maps_a_batch_to_the_output_range(method, norm):
    torch.manual_seed(0)
    model = create_translator(method, norm=norm, **SMALL[method]).eval()
    x = torch.rand(2, 1, 48, 32) * 2 - 1
    out = model.translate(x)
    assert out.image.shape == (2, 1, 48, 32)
    assert torch.isfinite(out.image).all()
    assert out.image.min() >= -1 and out.image.max() <= 1
    assert out.maps == {}
    assert torch.equal(model(x), out.image)  # forward is translate(...).image


@pytest.mark.parametrize("method", ["unet", "pix2pix"])
def test_spec_follows_the_config(method):
    model = create_translator(method, inputs=("t1w", "T2"), outputs="FLAIR", width=8, depth=3)
    spec = model.spec
    assert spec.method == method
    assert spec.inputs == ("T1", "T2") and spec.outputs == ("FLAIR",)
    assert spec.size_multiple == 8
    assert spec.paired is True and spec.stochastic is False
    assert spec.image_size is None
    assert model.translate(torch.zeros(1, 2, 16, 24)).image.shape == (1, 1, 16, 24)
    # The config rebuilds an identical network (what checkpoints rely on).
    again = create_translator(method, **model.config)
    assert again.spec == spec
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]


@pytest.mark.parametrize("method", ["unet", "pix2pix"])
def test_translate_rejects_wrong_channels_and_sizes(method):
    model = create_translator(method, width=8, depth=3)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        model.translate(torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        model.translate(torch.zeros(1, 1, 20, 16))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.translate([[0.0]])


def test_width_scales_the_model_to_a_cpu_size():
    def n_params(**kw):
        return sum(p.numel() for p in create_translator("pix2pix", **kw).parameters())

    assert n_params(width=8, depth=6) < n_params(width=16, depth=6) < n_params(width=32, depth=6)
    assert n_params(width=16, depth=6) < 3_000_000


def test_pix2pix_paper_generator_and_discriminator_sizes():
    # Isola et al.: unet_256 (ngf 64, 8 levels, batch norm) and the 70x70 PatchGAN (ndf 64, 3 layers).
    gen = Pix2PixUNet(3, 3, width=64, depth=8, norm="batch")
    disc = PatchGANDiscriminator(6, width=64, n_layers=3, norm="batch")
    # The authors' code reports 54.414 M and 2.769 M parameters for these two networks (its generator omits
    # the biases of the first and the bottleneck convolution, 576 parameters, which this one keeps).
    assert round((sum(p.numel() for p in gen.parameters()) - 576) / 1e6, 3) == 54.414
    assert round(sum(p.numel() for p in disc.parameters()) / 1e6, 3) == 2.769
    assert disc(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_pix2pix_dropout_sits_in_the_first_three_decoder_levels():
    gen = Pix2PixUNet(1, 1, width=8, depth=6, dropout=0.5)
    with_dropout = [i for i, up in enumerate(gen.ups) if any(isinstance(m, nn.Dropout) for m in up.modules())]
    assert with_dropout == [0, 1, 2]
    assert not any(isinstance(m, nn.Dropout) for m in Pix2PixUNet(1, 1, width=8, depth=6, dropout=0).modules())


def test_pix2pix_is_deterministic_in_eval_and_noisy_in_training():
    torch.manual_seed(0)
    model = create_translator("pix2pix", width=8, depth=4)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    model.train()
    assert not torch.equal(model.translate(x).image, model.translate(x).image)
    model.eval()
    assert torch.equal(model.translate(x).image, model.translate(x).image)


def test_pix2pix_test_time_dropout_is_seeded_by_the_generator():
    torch.manual_seed(0)
    model = create_translator("pix2pix", width=8, depth=4, test_dropout=True).eval()
    assert model.spec.stochastic is True
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    a = model.translate(x, generator=torch.Generator().manual_seed(1)).image
    b = model.translate(x, generator=torch.Generator().manual_seed(1)).image
    c = model.translate(x, generator=torch.Generator().manual_seed(2)).image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Dropout layers go back to eval afterwards.
    assert all(not m.training for m in model.modules() if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("n_layers, expected", [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field_is_measured_not_just_computed(n_layers, expected):
    assert patchgan_receptive_field(n_layers) == expected
    disc = PatchGANDiscriminator(1, width=4, n_layers=n_layers, norm="none")
    nn.init.constant_(disc.net[-1].weight, 1.0)
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    out = disc(x)
    cy, cx = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, cy, cx].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert int(rows.max() - rows.min() + 1) == expected
    assert int(cols.max() - cols.min() + 1) == expected
    assert disc.receptive_field == expected


def test_unet_skip_connections_carry_full_resolution_detail():
    # An untrained U-Net already passes a one-pixel impulse back at full resolution through its top skip.
    torch.manual_seed(0)
    net = UNet(1, 1, width=8, depth=3, norm="none").eval()
    x = torch.zeros(1, 1, 32, 32, requires_grad=True)
    net(x)[0, 0, 16, 16].backward()
    assert x.grad[0, 0, 16, 16].abs() > 0


def test_names_choose_activations_and_norms_with_suggestions():
    assert isinstance(make_act("LeakyReLU"), nn.LeakyReLU)
    assert make_act("leakyrelu").negative_slope == 0.2
    assert isinstance(make_norm("instance", 4), nn.InstanceNorm2d)
    assert isinstance(make_norm("none", 4), nn.Identity)
    with pytest.raises(UnknownChoiceError, match="Did you mean 'instance'"):
        make_norm("instanse", 4)
    with pytest.raises(UnknownChoiceError, match="known: .*leakyrelu"):
        create_translator("unet", width=8, depth=2, act="leaky")
    block = ConvNormAct(2, 4, norm="batch", act="relu", dropout=0.1)
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout]
    assert block[0].bias is None  # a bias before a mean-subtracting norm is wasted


@pytest.mark.parametrize("kw", [dict(width=0), dict(depth=0), dict(width=2.5)])
def test_bad_geometry_is_named(kw):
    with pytest.raises(ValueError, match="width|depth"):
        create_translator("unet", **{**dict(width=8, depth=2), **kw})


@pytest.mark.parametrize("method", ["unet", "pix2pix"])
def test_checkpoint_round_trip_gives_the_same_output(tmp_path, method):
    from napari_medtrans.translators.checkpoint import load_translator, save_checkpoint

    torch.manual_seed(0)
    model = create_translator(method, **SMALL[method]).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", normalisation={"outputs": {"T2": {"lo": 0, "hi": 9}}})
    loaded = load_translator(path)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    assert loaded.spec == model.spec
    assert torch.equal(loaded.translate(x).image, model.translate(x).image)
