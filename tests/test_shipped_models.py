"""Every model shipped in resources/models loads, runs, stays within the size limit and has a model card that
matches its metadata (method, direction, training command)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_medtrans.core.engine import translate_volume
from napari_medtrans.core.volume import Volume
from napari_medtrans.translators.checkpoint import (load_translator, read_checkpoint_metadata, redirect_translator,
                                                   translator_directions)

MODELS = Path(__file__).resolve().parents[1] / "resources" / "models"
SHIPPED = sorted(MODELS.glob("*.safetensors"))


def test_the_demo_model_is_shipped():
    assert MODELS / "demo-t1-t2.safetensors" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_has_a_card_and_runs(path, one_torch_thread):
    assert path.stat().st_size < 30 * 2**20
    info = read_checkpoint_metadata(path)
    card = path.with_suffix(".md").read_text()
    # the card names the file, the method, every modality of the direction, and how the file was made
    assert path.name in card and f"`{info.method}`" in card
    spec = info.spec
    assert all(m in card for m in spec["inputs"] + spec["outputs"])
    assert "Not for clinical use" in card and "medtrans train --method " + info.method in card
    assert info.training.get("command", "").startswith("medtrans train") and info.metrics
    # and its figures stand next to the zero-parameter floors on the same subjects
    assert "## Floors on the same test subjects" in card
    for floor in ("identity", "histogram", "lookup"):
        assert f"| {floor} |" in card, floor

    model = load_translator(path)
    rng = np.random.default_rng(0)
    inputs = {m: Volume(rng.random((32, 32, 2), dtype=np.float32) * 100, np.diag([1.5, 1.5, 2.0, 1.0]), modality=m)
              for m in spec["inputs"]}
    res = translate_volume(inputs if len(inputs) > 1 else next(iter(inputs.values())), model, device="cpu",
                           steps=2, seed=0, precision="fp32")
    outputs = getattr(res, "outputs", None) or {spec["outputs"][0]: res.volume}
    assert set(outputs) == set(spec["outputs"])
    for vol in outputs.values():
        assert vol.shape == (32, 32, 2) and np.isfinite(vol.data).all() and vol.synthetic
        np.testing.assert_array_equal(vol.affine, np.diag([1.5, 1.5, 2.0, 1.0]))

    # a two-modality model (DisDiff, HiFi-Syn) also runs its other direction, and its card names both
    for direction in translator_directions(model)[1:]:
        assert direction.replace("->", " -> ") in card
        twin = redirect_translator(model, direction)
        src = Volume(rng.random((32, 32, 2), dtype=np.float32) * 100, np.diag([1.5, 1.5, 2.0, 1.0]),
                     modality=twin.spec.inputs[0])
        vol = translate_volume(src, twin, device="cpu", steps=2, seed=0, precision="fp32").volume
        assert vol.shape == (32, 32, 2) and np.isfinite(vol.data).all() and vol.synthetic
        assert vol.modality == twin.spec.outputs[0]
