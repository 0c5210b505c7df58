"""Zero-parameter floors: each matches a hand computation on a tiny volume; evaluate reports them beside a model."""

import csv

import numpy as np
import pytest

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.training.floors import FLOORS, fit_floors, normalised_input, predict_floor


def _tiny(seed: int):
    """A 6 x 6 x 4 'subject': input in 0..100, target = 300 - 2 input + noise, mask the inner 4 x 4 x 2."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(1.0, 100.0, (6, 6, 4)).astype(np.float32)
    y = (300.0 - 2.0 * x + rng.normal(0, 1.0, x.shape)).astype(np.float32)
    mask = np.zeros(x.shape, bool)
    mask[1:5, 1:5, 1:3] = True
    return x, y, mask


def test_floors_match_a_hand_computation():
    subjects = [_tiny(0), _tiny(1)]
    model = fit_floors([({"T1": x}, y, m) for x, y, m in subjects], ["T1"], "T2")
    assert model.n_subjects == 2 and model.bins == 256
    assert model.correlation[0] < -0.95  # anti-correlated, so the histogram floor reverses the ranks

    x, y, mask = _tiny(2)
    # identity: the input normalised as a model's input, rescaled onto the median training target range
    lo_hi = []
    for _, ty, _ in subjects:
        pos = ty[ty > 0]
        lo_hi.append((min(np.percentile(pos, 0.5), 0.0), np.percentile(pos, 99.5)))
    lo, hi = np.median(np.array(lo_hi), axis=0)
    lo_x, hi_x = min(np.percentile(x[x > 0], 0.5), 0.0), np.percentile(x[x > 0], 99.5)
    xn = np.clip((x - lo_x) * 2 / (hi_x - lo_x) - 1, -1, 1)
    ident = predict_floor(model, "identity", {"T1": x}, mask)
    assert np.allclose(ident[mask], lo + (xn[mask] + 1) / 2 * (hi - lo), rtol=1e-5, atol=1e-3)
    assert np.all(ident[~mask] == 0)

    # histogram: the brightest input voxel gets the smallest pooled training target value, and so on
    hist = predict_floor(model, "histogram", {"T1": x}, mask)
    pooled = np.sort(np.concatenate([ty[m] for _, ty, m in subjects]))
    order = np.argsort(-x[mask], kind="stable")
    expected = np.empty(mask.sum(), np.float32)
    expected[order] = np.interp(np.linspace(0, 1, mask.sum()), np.linspace(0, 1, pooled.size), pooled)
    assert np.allclose(hist[mask], expected, atol=0.2)  # 4096 quantiles of 64 values: interpolation only

    # lookup: mean training target of the voxels in the same normalised-input bin, else the nearest bin's
    look = predict_floor(model, "lookup", {"T1": x}, mask)
    bins = {}
    for tx, ty, m in subjects:
        b = np.clip(((normalised_input(tx)[m] + 1) * 0.5 * 256).astype(int), 0, 255)
        for k, v in zip(b, ty[m]):
            bins.setdefault(int(k), []).append(float(v))
    filled = np.array(sorted(bins))
    means = {k: np.mean(v) for k, v in bins.items()}
    for got, xv in zip(look[mask], normalised_input(x)[mask]):
        k = int(np.clip((xv + 1) * 0.5 * 256, 0, 255))
        near = filled[np.argmin(np.abs(filled - k))]
        assert got == pytest.approx(means[k] if k in means else means[int(near)], abs=1e-3)


def test_two_inputs_use_a_joint_table_and_the_best_input():
    rng = np.random.default_rng(0)
    subjects = []
    for _ in range(2):
        a = rng.uniform(1, 100, (8, 8, 4)).astype(np.float32)
        b = rng.uniform(1, 100, (8, 8, 4)).astype(np.float32)
        subjects.append(({"T1": a, "T2": b}, (a + 3 * b).astype(np.float32), np.ones(a.shape, bool)))
    model = fit_floors(subjects, ["T1", "T2"], "FLAIR")
    assert model.table.shape == (64, 64)
    assert model.identity_input() == 1 and model.histogram_input() == 1  # T2 carries most of the target
    pred = predict_floor(model, "lookup", subjects[0][0], subjects[0][2])
    assert np.corrcoef(pred.ravel(), subjects[0][1].ravel())[0, 1] > 0.95


def test_bad_floor_names_and_empty_training_are_refused():
    x, y, m = _tiny(0)
    model = fit_floors([({"T1": x}, y, m)], ["T1"], "T2")
    with pytest.raises(UnknownChoiceError, match="lookup"):
        predict_floor(model, "median", {"T1": x}, m)
    with pytest.raises(ValueError, match="no training subject"):
        fit_floors([({"T1": x}, y, np.zeros_like(m))], ["T1"], "T2")
    assert set(FLOORS) == {"identity", "histogram", "lookup"}


def test_evaluate_reports_the_floors_beside_the_model(tmp_path, capsys, one_torch_thread):
    """`medtrans evaluate` prints the three floors per direction and writes them to the CSV with a method column."""
    import torch

    from napari_medtrans.cli import main
    from napari_medtrans.phantom import write_phantom_dataset
    from napari_medtrans.translators import create_translator
    from napari_medtrans.translators.checkpoint import save_checkpoint

    data = tmp_path / "data"
    write_phantom_dataset(data, 4, seed=3, shape=(24, 28, 12), contrasts=("T1", "T2"), split=(0.5, 0.25, 0.25))
    torch.manual_seed(0)
    net = create_translator("unet", width=4, depth=2)
    model = tmp_path / "m.safetensors"
    save_checkpoint(net, model, normalisation={"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                                               "inputs": {"T1": {"lo": 0.0, "hi": 300.0}},
                                               "outputs": {"T2": {"lo": 0.0, "hi": 500.0}}})
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(out), "--device", "cpu",
                 "--precision", "fp32"]) == 0
    text = capsys.readouterr().out
    table = text.split("PSNR")[1]
    for kind in FLOORS:
        assert f"floor: {kind}" in table
    assert "fitted on the 2 training subjects" in text
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    methods = {r["method"] for r in rows}
    assert methods == {"model", "floor: identity", "floor: histogram", "floor: lookup"}
    # the per-voxel lookup beats a random-weight network on its own data
    mean = lambda m: np.mean([float(r["psnr"]) for r in rows if r["method"] == m])  # noqa: E731
    assert mean("floor: lookup") > mean("model")

    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(out), "--device", "cpu",
                 "--precision", "fp32", "--no-floors"]) == 0
    assert "floor:" not in capsys.readouterr().out
