"""Exported translators: TorchScript and ONNX files with a JSON sidecar, loaded through load_translator."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from napari_medtrans.core.errors import CheckpointError, MethodMismatchError
from napari_medtrans.translators import (
    TranslationOutput,
    Translator,
    TranslatorSpec,
    create_translator,
    load_translator,
    read_checkpoint_metadata,
    register_translator,
    save_checkpoint,
)
from napari_medtrans.translators.checkpoint import sidecar_path
from napari_medtrans.translators.exported import (
    OnnxTranslator,
    ScriptedTranslator,
    export_onnx,
    export_torchscript,
)

NAME = "_test-exported-tiny"
NORM = {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5, "outputs": {"T2": {"lo": 0.0, "hi": 640.0}}}


class _TinyWithMap(Translator):
    """Two-input conv net that also returns a per-pixel map in [0, 1]."""

    def __init__(self, width: int = 4):
        super().__init__(
            TranslatorSpec(method=NAME, inputs=("T1", "T2"), outputs=("T1c",), size_multiple=4, maps=("tsm",)),
            {"width": width},
        )
        self.body = nn.Sequential(
            nn.Conv2d(2, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, 2, 3, padding=1),
        )

    def translate(self, x, *, steps=None, generator=None):
        h = self.body(x)
        return TranslationOutput(image=torch.tanh(h[:, :1]), maps={"tsm": torch.sigmoid(h[:, 1:])})


@register_translator(NAME)
def _tiny(width: int = 4) -> _TinyWithMap:
    return _TinyWithMap(width)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_translator(NAME, width=4).eval()


@pytest.fixture
def x():
    return torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1


def _assert_matches(loaded, model, x):
    with torch.no_grad():
        ref = model.translate(x)
        out = loaded.translate(x)
    assert isinstance(out, TranslationOutput)
    assert out.image.shape == (3, 1, 16, 16) and out.image.dtype == torch.float32
    torch.testing.assert_close(out.image, ref.image, rtol=0, atol=1e-4)
    assert set(out.maps) == {"tsm"}
    torch.testing.assert_close(out.maps["tsm"], ref.maps["tsm"], rtol=0, atol=1e-4)


def test_torchscript_round_trip_matches_eager(model, x, tmp_path):
    path = export_torchscript(model, tmp_path / "tiny.ts", 16, normalisation=NORM)
    side = json.loads(sidecar_path(path).read_text())
    assert side["spec"]["method"] == NAME and side["spec"]["image_size"] == [16, 16]
    loaded = load_translator(path)
    assert isinstance(loaded, ScriptedTranslator) and not loaded.training
    assert loaded.spec.inputs == ("T1", "T2") and loaded.spec.maps == ("tsm",)
    assert loaded.normalisation == NORM
    assert loaded.checkpoint_info.format == "torchscript"
    _assert_matches(loaded, model, x)  # traced with batch 2, run with batch 3


def test_onnx_round_trip_matches_eager(model, x, tmp_path):
    path = export_onnx(model, tmp_path / "tiny.onnx", (16, 16), dynamic_batch=True, normalisation=NORM)
    loaded = load_translator(path, method=NAME, device="cpu")
    assert isinstance(loaded, OnnxTranslator)
    assert loaded.providers[-1] == "CPUExecutionProvider"
    assert loaded.output_names == ["image", "tsm"]
    assert next(loaded.buffers()).device.type == "cpu"
    _assert_matches(loaded, model, x)
    info = read_checkpoint_metadata(path)
    assert info.format == "onnx" and info.method == NAME and info.normalisation == NORM


def test_exported_from_checkpoint_carries_its_provenance(model, tmp_path, x):
    ck = save_checkpoint(model, tmp_path / "m.safetensors", normalisation=NORM, metrics={"psnr": 28.0})
    loaded = load_translator(ck)
    path = export_onnx(loaded, tmp_path / "m.onnx", 16)
    info = read_checkpoint_metadata(path)
    assert info.normalisation == NORM and info.metrics == {"psnr": 28.0}
    assert info.raw["source"]["checkpoint_sha256"] == loaded.checkpoint_info.sha256
    assert info.raw["source"]["config"] == {"width": 4}


def test_dynamic_size_onnx_runs_at_other_sizes(model, tmp_path):
    path = export_onnx(model, tmp_path / "dyn.onnx", 16, dynamic_size=True)
    loaded = load_translator(path)
    assert loaded.spec.image_size is None
    x = torch.rand(1, 2, 24, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.translate(x).image, model.translate(x).image, rtol=0, atol=1e-4)


def test_fixed_size_graph_checks_its_input(model, tmp_path):
    loaded = load_translator(export_torchscript(model, tmp_path / "fixed.ts", 16))
    with pytest.raises(ValueError, match="takes 16x16"):
        loaded.translate(torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match=r"takes 2 \(T1, T2\)"):
        loaded.translate(torch.zeros(1, 1, 16, 16))


def test_torchscript_saved_as_pt_is_recognised(model, x, tmp_path):
    path = export_torchscript(model, tmp_path / "scripted.pt", 16)
    loaded = load_translator(path)
    assert isinstance(loaded, ScriptedTranslator)
    _assert_matches(loaded, model, x)


@pytest.mark.parametrize("exporter, suffix", [(export_torchscript, ".ts"), (export_onnx, ".onnx")])
def test_missing_sidecar_is_named(model, tmp_path, exporter, suffix):
    path = exporter(model, tmp_path / f"m{suffix}", 16)
    side = sidecar_path(path)
    assert side.name == f"m{suffix}.json"
    side.unlink()
    with pytest.raises(CheckpointError) as err:
        load_translator(path)
    assert str(side) in str(err.value) and "missing" in str(err.value)


@pytest.mark.parametrize(
    "spec, expect",
    [
        ({"inputs": ["T1"]}, "lacks \"method\""),
        ({"method": "x", "inputs": "T1"}, "list of names"),
        ({"method": "x", "colour": "blue"}, "colour"),
        ({"method": "x", "image_size": [16]}, "image_size"),
    ],
)
def test_bad_sidecar_fields_are_named(model, tmp_path, spec, expect):
    path = export_torchscript(model, tmp_path / "m.ts", 16)
    sidecar_path(path).write_text(json.dumps({"spec": spec}))
    with pytest.raises(CheckpointError, match=expect) as err:
        load_translator(path)
    assert "m.ts.json" in str(err.value)


def test_sidecar_spec_contradicting_the_graph_is_caught(model, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx", 16)
    side = json.loads(sidecar_path(path).read_text())
    side["spec"]["outputs"] = ["T2", "FLAIR"]
    sidecar_path(path).write_text(json.dumps(side))
    loaded = load_translator(path)
    with pytest.raises(CheckpointError, match=r"promises \[1, 2, H, W\]"):
        loaded.translate(torch.zeros(1, 2, 16, 16))


def test_method_mismatch_and_truncated_exports(model, tmp_path):
    ts = export_torchscript(model, tmp_path / "m.ts", 16)
    with pytest.raises(MethodMismatchError, match="pix2pix"):
        load_translator(ts, method="pix2pix")
    for path in (ts, export_onnx(model, tmp_path / "m.onnx", 16)):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated") as err:
            load_translator(path)
        assert str(path) in str(err.value)
