"""Building SAM2.1 / MedSAM2 from the sam2 package's configs with weights from the store (random weights written
here; nothing downloaded)."""

from __future__ import annotations

import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from napari_medtrans.core.errors import ConfigMismatchError, UnknownChoiceError, WeightsError  # noqa: E402
from napari_medtrans.segment import MODELS, Segmenter, build_model, model_names  # noqa: E402


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "weights"


def test_every_model_has_weights_in_the_manifest_and_a_sam2_config():
    import importlib.resources

    from napari_medtrans.core.weights import known_weights

    assert set(model_names()) == {"sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus",
                                  "sam2.1_hiera_large", "medsam2", "promptunet-phantom"}
    assert MODELS["promptunet-phantom"].kind == "promptunet"  # shipped in resources/, not in the weights store
    for spec in (s for s in MODELS.values() if s.kind == "sam2"):
        entry = known_weights(spec.weights)
        if entry.kind == "sam2.1":
            assert entry.extra["sam2_config"] == spec.config
        assert importlib.resources.files("sam2").joinpath(spec.config).is_file()
    assert MODELS["medsam2"].image_size == 512


def test_missing_weights_say_how_to_import_them(store):
    with pytest.raises(WeightsError, match="medtrans weights import PATH --name medsam2_latest"):
        build_model("medsam2")
    with pytest.raises(UnknownChoiceError, match="Did you mean 'medsam2'"):
        build_model("medsam")


def test_medsam2_is_tiny_at_512_and_loads_a_checkpoint_from_the_store(store, tmp_path):
    from napari_medtrans.core.weights import import_weights

    model = build_model("medsam2", random_init=True)
    assert model.image_size == 512 and model.sam_prompt_encoder.image_embedding_size == (32, 32)
    assert model.memory_attention.layers[0].self_attn.freqs_cis.shape[0] == 32 * 32
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(38.96e6, rel=0.01)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt = tmp_path / "MedSAM2_latest.pt"
    torch.save({"model": state}, ckpt)
    import_weights(ckpt, name="medsam2_latest")

    loaded = build_model("medsam2")
    key = "image_encoder.trunk.blocks.0.attn.qkv.weight"
    torch.testing.assert_close(loaded.state_dict()[key], state[key])
    assert loaded.medtrans_weights.endswith("MedSAM2_latest.pt")
    seg = Segmenter(loaded)
    assert seg.name == "medsam2" and seg.image_size == 512 and seg.precision == "fp32"

    state.pop(key)
    bad = tmp_path / "bad.pt"
    torch.save({"model": state}, bad)
    with pytest.raises(ConfigMismatchError, match=r"1 missing tensors \['image_encoder.trunk.blocks.0"):
        build_model("medsam2", weights_file=bad)


def test_sam21_tiny_config_builds_at_another_input_size():
    model = build_model("sam2.1_hiera_tiny", random_init=True, image_size=256)
    assert model.image_size == 256
    with torch.inference_mode():
        out = model.forward_image(torch.zeros(1, 3, 256, 256))
    assert [tuple(t.shape[-2:]) for t in out["backbone_fpn"]] == [(64, 64), (32, 32), (16, 16)]
    with pytest.raises(ValueError, match="multiple of 64"):
        build_model("sam2.1_hiera_tiny", random_init=True, image_size=300)
