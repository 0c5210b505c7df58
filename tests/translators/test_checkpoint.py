"""Checkpoint format: safetensors round trip, metadata, mismatches, truncation, unsafe pickles, .pt conversion."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest
import torch
from torch import nn

import napari_medtrans
from napari_medtrans.core.errors import (
    CheckpointError,
    ConfigMismatchError,
    MethodMismatchError,
    UnsafeCheckpointError,
)
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
from napari_medtrans.translators import checkpoint as ckpt_mod
from napari_medtrans.translators.checkpoint import convert_checkpoint, sidecar_path

TINY = "_test-ckpt-tiny"
OTHER = "_test-ckpt-other"
NORM = {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5, "outputs": {"T2": {"lo": 1.5, "hi": 812.0}}}


class _Tiny(Translator):
    """Small conv net with a BatchNorm (float and int64 buffers) and optionally tied weights."""

    def __init__(self, method: str, width: int = 4, tie: bool = False):
        super().__init__(TranslatorSpec(method=method, inputs=("T1",), outputs=("T2",)), {"width": width, "tie": tie})
        self.enc = nn.Conv2d(1, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.mid = nn.Conv2d(width, width, 3, padding=1)
        self.mid2 = nn.Conv2d(width, width, 3, padding=1)
        if tie:
            self.mid2.weight = self.mid.weight
        self.dec = nn.Conv2d(width, 1, 3, padding=1)

    def translate(self, x, *, steps=None, generator=None):
        h = torch.relu(self.norm(self.enc(x)))
        h = torch.relu(self.mid2(torch.relu(self.mid(h))))
        return TranslationOutput(image=torch.tanh(self.dec(h)))


@register_translator(TINY)
def _tiny(width: int = 4, tie: bool = False) -> _Tiny:
    return _Tiny(TINY, width=width, tie=tie)


@register_translator(OTHER)
def _other(width: int = 4, tie: bool = False) -> _Tiny:
    return _Tiny(OTHER, width=width, tie=tie)


def _trained(width=4, tie=True, seed=0) -> _Tiny:
    torch.manual_seed(seed)
    model = create_translator(TINY, width=width, tie=tie)
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their defaults
        for _ in range(3):
            model.translate(torch.randn(4, 1, 16, 16) * 2 + 0.5)
    return model.eval()


@pytest.fixture
def x():
    return torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture
def saved(tmp_path):
    model = _trained()
    path = save_checkpoint(
        model,
        tmp_path / "tiny.safetensors",
        normalisation=NORM,
        training={"command": "medtrans train --method tiny", "data": "phantom", "steps": 10, "wall_time_s": 1.5},
        metrics={"psnr": 27.5, "ssim": 0.9},
    )
    return model, path


def test_round_trip_gives_identical_outputs(saved, x):
    model, path = saved
    loaded = load_translator(path)
    assert type(loaded) is _Tiny and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded.translate(x).image, model.translate(x).image, rtol=0, atol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # the tie survives the round trip (one tensor in the file, two names in the model)
    assert loaded.mid2.weight.data_ptr() == loaded.mid.weight.data_ptr()
    assert loaded.normalisation == NORM
    assert loaded.checkpoint_info.method == TINY
    assert loaded.checkpoint_info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_untied_model_and_method_check_pass(tmp_path, x):
    model = _trained(tie=False)
    path = save_checkpoint(model, tmp_path / "untied.safetensors")
    loaded = load_translator(path, method=TINY, device="auto" if not torch.cuda.is_available() else "cpu")
    assert loaded.mid2.weight.data_ptr() != loaded.mid.weight.data_ptr()
    with torch.no_grad():
        assert torch.equal(loaded.translate(x).image, model.translate(x).image)
    assert loaded.normalisation is None


def test_metadata_readable_without_loading_tensors(saved, monkeypatch):
    _, path = saved
    import safetensors
    import safetensors.torch

    def boom(*a, **k):
        raise RuntimeError("tensors must not be loaded to read metadata")

    monkeypatch.setattr(safetensors.torch, "load_file", boom)
    monkeypatch.setattr(safetensors, "safe_open", boom)
    monkeypatch.setattr(torch, "load", boom)
    info = read_checkpoint_metadata(path)
    assert info.method == TINY
    assert info.config == {"width": 4, "tie": True}
    assert info.spec == _tiny().spec.to_dict()
    assert TranslatorSpec.from_dict(info.spec).outputs == ("T2",)
    assert info.normalisation == NORM
    assert info.training["steps"] == 10 and info.training["command"].startswith("medtrans train")
    assert info.metrics == {"psnr": 27.5, "ssim": 0.9}
    assert info.package_version == napari_medtrans.__version__
    assert info.torch_version == torch.__version__
    assert info.created and info.created[:4].isdigit()
    assert info.raw["format_version"] == ckpt_mod.FORMAT_VERSION
    assert info.format == "safetensors"
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_of_another_method_names_both(saved):
    _, path = saved
    with pytest.raises(MethodMismatchError) as err:
        load_translator(path, method=OTHER)
    msg = str(err.value)
    assert TINY in msg and OTHER in msg and str(path) in msg
    assert err.value.expected == OTHER and err.value.found == TINY


def _rewrite(path, out, *, meta_update=None, extra=None):
    """Copy a checkpoint with changed metadata and/or extra tensors."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["medtrans"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(meta_update or {})
    tensors.update(extra or {})
    save_file(tensors, out, metadata={"medtrans": json.dumps(meta)})
    return out


def test_config_that_does_not_fit_names_file_method_and_shapes(saved, tmp_path):
    _, path = saved
    bad = _rewrite(path, tmp_path / "wide.safetensors", meta_update={"config": {"width": 8, "tie": True}})
    with pytest.raises(ConfigMismatchError) as err:
        load_translator(bad)
    msg = str(err.value)
    assert str(bad) in msg and TINY in msg
    assert "enc.weight: checkpoint [4, 1, 3, 3] vs model [8, 1, 3, 3]" in msg
    # even non-strict loading refuses tensors of the wrong shape
    with pytest.raises(ConfigMismatchError):
        load_translator(bad, strict=False)


def test_unknown_config_keyword_is_a_config_mismatch(saved, tmp_path):
    _, path = saved
    bad = _rewrite(path, tmp_path / "kw.safetensors", meta_update={"config": {"width": 4, "depth": 3}})
    with pytest.raises(ConfigMismatchError, match="depth"):
        load_translator(bad)


def test_unexpected_tensor_strict_and_lenient(saved, tmp_path, x):
    model, path = saved
    bad = _rewrite(path, tmp_path / "extra.safetensors", extra={"head.weight": torch.zeros(2, 2)})
    with pytest.raises(ConfigMismatchError, match="head.weight"):
        load_translator(bad)
    loaded = load_translator(bad, strict=False)
    with torch.no_grad():
        assert torch.equal(loaded.translate(x).image, model.translate(x).image)


def test_missing_tensor_is_named(saved, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    _, path = saved
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "dec.bias"}
    save_file(tensors, tmp_path / "short.safetensors", metadata=meta)
    with pytest.raises(ConfigMismatchError, match="missing from checkpoint dec.bias"):
        load_translator(tmp_path / "short.safetensors")


@pytest.mark.parametrize("cut", [4, 100, -7])
def test_truncated_file_raises_checkpoint_error_naming_file(saved, tmp_path, cut):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:cut])
    for call in (load_translator, read_checkpoint_metadata):
        with pytest.raises(CheckpointError) as err:
            call(bad)
        assert str(bad) in str(err.value)
        assert "truncated" in str(err.value)


def test_not_a_checkpoint_and_missing_file(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00this is not json at all")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_translator(junk)
    with pytest.raises(CheckpointError, match="no such file"):
        load_translator(tmp_path / "absent.safetensors")
    other = tmp_path / "model.h5"
    other.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"unknown model file type '\.h5'.*\.safetensors.*\.onnx"):
        load_translator(other)


def test_safetensors_without_metadata_needs_method(tmp_path, x):
    from safetensors.torch import save_file

    model = _trained(tie=False)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, plain)
    with pytest.raises(CheckpointError, match="no napari-medtrans metadata"):
        load_translator(plain)
    sidecar_path(plain).write_text(json.dumps({"method": TINY, "config": {"width": 4}}))
    loaded = load_translator(plain)
    with torch.no_grad():
        assert torch.equal(loaded.translate(x).image, model.translate(x).image)


class _Evil:
    """Pickles as a call to os.system that would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_crafted_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    # control: the crafted bytes really run code when unpickled the unsafe way
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(_Evil(control), protocol=2))
    assert control.exists()

    marker = tmp_path / "pwned"
    zip_pt = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "method": TINY, "payload": _Evil(marker)}, zip_pt)
    raw_pth = tmp_path / "evil.pth"
    raw_pth.write_bytes(pickle.dumps({"state_dict": _Evil(marker)}, protocol=2))
    for path in (zip_pt, raw_pth):
        with pytest.raises(UnsafeCheckpointError) as err:
            load_translator(path, method=TINY)
        assert str(path) in str(err.value) and "system" in str(err.value)
        with pytest.raises(UnsafeCheckpointError):
            convert_checkpoint(path, tmp_path / "never.safetensors", method=TINY)
    assert not marker.exists()
    assert not (tmp_path / "never.safetensors").exists()


def test_pt_checkpoint_loads_and_converts(tmp_path, x):
    model = _trained(tie=False)
    pt = tmp_path / "tiny.pt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "method": TINY,
            "config": {"width": 4, "tie": False},
            "normalisation": NORM,
            "metrics": {"psnr": 30.0},
            "optimizer": {"lr": 1e-3},
        },
        pt,
    )
    loaded = load_translator(pt)
    assert loaded.checkpoint_info.format == "pt" and loaded.normalisation == NORM
    with torch.no_grad():
        ref = model.translate(x).image
        assert torch.equal(loaded.translate(x).image, ref)
    out = convert_checkpoint(pt, tmp_path / "tiny.safetensors")
    info = read_checkpoint_metadata(out)
    assert info.method == TINY and info.normalisation == NORM and info.metrics == {"psnr": 30.0}
    assert info.training["converted_from"] == {"file": "tiny.pt", "sha256": hashlib.sha256(pt.read_bytes()).hexdigest()}
    with torch.no_grad():
        assert torch.equal(load_translator(out).translate(x).image, ref)


def test_bare_state_dict_pt_needs_method_or_sidecar(tmp_path, x):
    model = _trained(width=2, tie=False)
    pt = tmp_path / "bare.pth"
    torch.save(model.state_dict(), pt)
    with pytest.raises(CheckpointError, match="does not say which method"):
        load_translator(pt)
    with pytest.raises(ConfigMismatchError):  # default width 4 does not fit width-2 tensors
        load_translator(pt, method=TINY)
    sidecar_path(pt).write_text(json.dumps({"method": TINY, "config": {"width": 2}}))
    loaded = load_translator(pt, method=TINY)
    with torch.no_grad():
        assert torch.equal(loaded.translate(x).image, model.translate(x).image)
    with pytest.raises(MethodMismatchError):
        load_translator(pt, method=OTHER)


def test_save_is_atomic_and_validates_arguments(saved, tmp_path, monkeypatch):
    model, path = saved
    before = path.read_bytes()
    import safetensors.torch

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]
    monkeypatch.undo()

    with pytest.raises(ValueError, match="safetensors"):
        save_checkpoint(model, tmp_path / "model.pt")
    with pytest.raises(TypeError, match='"metrics"'):
        save_checkpoint(model, tmp_path / "m.safetensors", metrics={"when": object()})
    with pytest.raises(ValueError, match="lo < hi"):
        save_checkpoint(model, tmp_path / "m.safetensors", normalisation={"outputs": {"T2": {"lo": 5, "hi": 1}}})
    assert not (tmp_path / "m.safetensors").exists()


def test_newer_format_is_refused(saved, tmp_path):
    _, path = saved
    bad = _rewrite(path, tmp_path / "future.safetensors", meta_update={"format_version": 99})
    with pytest.raises(CheckpointError, match="upgrade"):
        read_checkpoint_metadata(bad)
