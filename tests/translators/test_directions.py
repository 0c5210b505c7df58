"""One two-modality checkpoint (HiFi-Syn, DisDiff) translates both ways: ``load_translator(path, direction=...)``."""

import pytest
import torch

from napari_medtrans.core.errors import CheckpointError, UnknownChoiceError
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import (
    format_direction,
    load_translator,
    parse_direction,
    read_checkpoint_metadata,
    redirect_translator,
    save_checkpoint,
    translator_directions,
)

T1_STATS = {"lo": 1000.0, "hi": 1010.0}
T2_STATS = {"lo": 0.0, "hi": 2.0}
NORM = {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5, "inputs": {"T1": T1_STATS},
        "outputs": {"T2": T2_STATS}, "targets": "dataset"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hifisyn():
    torch.manual_seed(0)
    return create_translator("hifi-syn", preset="cpu", width=8, disc_width=8, attr_dim=4).eval()


def _disdiff(**kw):
    torch.manual_seed(0)
    model = create_translator("disdiff", preset="cpu", width=8, disc_width=8, diff_width=8, attr_dim=4, **kw).eval()
    with torch.no_grad():  # distinct mean attributes per modality, so mixing them up shows
        model.net.attr_mean_T1.copy_(torch.randn(4))
        model.net.attr_mean_T2.copy_(torch.randn(4))
    return model


def _x(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 1, 16, 16, generator=g) * 2 - 1


def _hifisyn_by_hand(model, x, source, target):
    """HiFi-Syn's translation written with the per-modality parts of the saved model."""
    content = model.net.enc_c[source](x)
    return model.net.decode(content, model.bank.read(content, target), target).clamp(-1, 1)


@pytest.mark.parametrize("make", [_hifisyn, _disdiff], ids=["hifi-syn", "disdiff"])
def test_state_dict_keys_name_modalities_not_roles(make):
    model = make()
    twin = model.for_direction("T2", "T1")
    assert (twin.spec.inputs, twin.spec.outputs) == (("T2",), ("T1",))
    assert (twin.config["source"], twin.config["target"]) == ("T2", "T1")
    a, b = model.state_dict(), twin.state_dict()
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(b[key], a[key])
    assert model.for_direction("T1", "T2") is model
    with pytest.raises(UnknownChoiceError, match="T1->T2"):
        model.for_direction("T1", "FLAIR")


def test_hifisyn_reverse_uses_the_t2_encoder_and_the_t1_decoder(tmp_path):
    model = _hifisyn()
    path = save_checkpoint(model, tmp_path / "hifi.safetensors", normalisation=NORM)
    forward = load_translator(path, direction="T1->T2")
    reverse = load_translator(path, direction="T2->T1")
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(forward.translate(x).image, _hifisyn_by_hand(model, x, "T1", "T2"))
        got = reverse.translate(x).image
        torch.testing.assert_close(got, _hifisyn_by_hand(model, x, "T2", "T1"))
        # the check can fail: the wrong encoder or the wrong decoder gives another image
        assert not torch.allclose(got, _hifisyn_by_hand(model, x, "T1", "T1"), atol=1e-4)
        content = model.net.enc_c["T2"](x)
        wrong_decoder = model.net.decode(content, model.bank.read(content, "T1"), "T2").clamp(-1, 1)
        assert not torch.allclose(got, wrong_decoder, atol=1e-4)


def test_disdiff_reverse_uses_t1_attribute_and_t1_diffusion_module(tmp_path):
    model = _disdiff()
    path = save_checkpoint(model, tmp_path / "disdiff.safetensors", normalisation=NORM)
    reverse = load_translator(path, direction="T2:T1")
    assert (reverse.source, reverse.target) == ("T2", "T1")
    x = _x()
    n = model.schedule.n_steps
    with torch.no_grad():
        got = reverse.translate(x, steps=1, generator=torch.Generator().manual_seed(3)).image
        net = model.net
        content = net.enc_c["T2"](x)
        draft = net.decode(content, net.mean_attribute("T1", 2), "T1")
        noise = torch.randn(draft.shape, generator=torch.Generator().manual_seed(3))
        s = torch.full((2,), n, dtype=torch.long)
        want = model.denoise(noise, s, content, draft, "T1").clamp(-1, 1)
        torch.testing.assert_close(got, want)
        wrong = model.denoise(noise, s, content, draft, "T2").clamp(-1, 1)  # the other diffusion module
        assert not torch.allclose(got, wrong, atol=1e-4)


def test_disdiff_backbone_only_reverse_matches_the_draft():
    model = _disdiff(use_diffusion=False)
    reverse = model.for_direction("T2", "T1")
    x = _x()
    with torch.no_grad():
        want = model.net.decode(model.net.enc_c["T2"](x), model.net.mean_attribute("T1", 2), "T1").clamp(-1, 1)
        torch.testing.assert_close(reverse.translate(x).image, want)
        wrong = model.net.decode(model.net.enc_c["T2"](x), model.net.mean_attribute("T2", 2), "T1").clamp(-1, 1)
        assert not torch.allclose(reverse.translate(x).image, wrong, atol=1e-4)


def test_reverse_normalisation_maps_outputs_into_the_t1_range(tmp_path):
    path = save_checkpoint(_hifisyn(), tmp_path / "hifi.safetensors", normalisation=NORM)
    saved = load_translator(path)
    assert saved.normalisation["outputs"] == {"T2": T2_STATS}
    reverse = load_translator(path, direction="t2->t1")  # modality spellings are normalised
    assert reverse.normalisation["outputs"] == {"T1": T1_STATS}
    assert reverse.normalisation["inputs"] == {"T2": T2_STATS}
    assert reverse.normalisation["targets"] == "volume"  # T1 (the saved input) was normalised per volume
    assert reverse.normalisation["lower_pct"] == 0.5
    assert reverse.checkpoint_info.sha256 == saved.checkpoint_info.sha256
    assert load_translator(path, direction="T1->T2").normalisation == saved.normalisation

    # the reversed model saved as a checkpoint of its own keeps its direction and statistics, and reverses back
    again = save_checkpoint(reverse, tmp_path / "reversed.safetensors")
    info = read_checkpoint_metadata(again)
    assert (info.spec["inputs"], info.spec["outputs"]) == (["T2"], ["T1"])
    back = load_translator(again, direction="T1->T2")
    assert back.normalisation["outputs"] == {"T2": T2_STATS}
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(back.translate(x).image, saved.translate(x).image)


def test_missing_statistics_for_the_reverse_output_name_the_checkpoint(tmp_path):
    only_t2 = {k: v for k, v in NORM.items() if k != "inputs"}
    path = save_checkpoint(_hifisyn(), tmp_path / "no-t1-stats.safetensors", normalisation=only_t2)
    load_translator(path)  # the saved direction needs only T2's statistics
    with pytest.raises(CheckpointError, match=r"no-t1-stats\.safetensors.*statistics for T1") as err:
        load_translator(path, direction="T2->T1")
    assert "T2->T1" in str(err.value)
    bare = save_checkpoint(_hifisyn(), tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match=r"bare\.safetensors.*no normalisation record"):
        load_translator(bare, direction="T2->T1")


def test_one_direction_translator_names_the_checkpoint_and_its_direction(tmp_path):
    net = create_translator("unet", inputs=("T1",), outputs=("T2",), width=4, depth=2)
    path = save_checkpoint(net, tmp_path / "unet.safetensors", normalisation=NORM)
    model = load_translator(path)
    assert translator_directions(model) == ["T1->T2"]
    with pytest.raises(CheckpointError, match=r"unet\.safetensors.*one-direction.*T1->T2.*not T2->T1") as err:
        load_translator(path, direction="T2->T1")
    assert err.value.data["choices"] == ["T1->T2"]
    assert load_translator(path, direction="T1->T2").spec.outputs == ("T2",)
    two_way = load_translator(save_checkpoint(_hifisyn(), tmp_path / "h.safetensors", normalisation=NORM))
    assert translator_directions(two_way) == ["T1->T2", "T2->T1"]
    with pytest.raises(CheckpointError, match=r"h\.safetensors.*T1->T2 or T2->T1, not T1->FLAIR"):
        redirect_translator(two_way, "T1->FLAIR")


@pytest.mark.parametrize("text", ["T1", "T1->", "->T2", "T1->T1", "T1+T1->T2"])
def test_bad_directions_are_refused_before_loading(text):
    with pytest.raises(ValueError, match='"direction"'):
        parse_direction(text)
    with pytest.raises(ValueError, match='"direction"'):
        load_translator(__file__, direction=text)  # an existing file that is no model: the direction fails first


def test_parse_and_format_directions():
    assert parse_direction("t2w -> T1") == (("T2",), ("T1",))
    assert parse_direction("T1+T2:flair") == (("T1", "T2"), ("FLAIR",))
    assert format_direction(("T1", "T2"), ("FLAIR",)) == "T1+T2->FLAIR"
