"""The generic trainer: learning, schedule, checkpoints with metadata, logs, exact resume, errors."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

from napari_medtrans.core.dataset import Dataset, Subject
from napari_medtrans.core.errors import CheckpointError, MedtransError
from napari_medtrans.core.io import write_nifti
from napari_medtrans.core.volume import Volume
from napari_medtrans.training.datasets import PairedSliceDataset
from napari_medtrans.training.recipes import RecipeParts, get_recipe, list_recipes
from napari_medtrans.training.trainer import (
    FINAL_CHECKPOINT,
    STATE_FILE,
    Trainer,
    TrainingDivergedError,
    cosine_lr,
)
from napari_medtrans.translators import create_translator

SHAPE = (24, 24, 8)


# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _subject_images(seed):
    """A blob phantom: T1 bright where T2 is dark (T2 = 1200 - T1 inside the head), i.e. an affine map."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    t1 = np.zeros(SHAPE, np.float32)
    for k in range(SHAPE[2]):
        cy, cx = rng.uniform(9, 15, size=2)
        head = (i - cy) ** 2 + (j - cx) ** 2 < 8.5**2
        core = (i - cy - rng.uniform(-2, 2)) ** 2 + (j - cx) ** 2 < rng.uniform(2, 4.5) ** 2
        t1[..., k] = np.where(head, 300 + 600 * core + rng.normal(0, 10, head.shape), 0)
    mask = (t1 > 0).astype(np.float32)
    t2 = np.where(mask > 0, 1200 - t1, 0).astype(np.float32)
    return t1, t2, mask


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    subjects = []
    for n, split in enumerate(["train"] * 3 + ["val"]):
        sid = f"sub-{n}"
        for name, arr in zip(("T1", "T2", "mask"), _subject_images(n)):
            write_nifti(Volume(arr, np.eye(4)), root / sid / f"{name}.nii.gz")
        subjects.append(Subject(sid, split, {"T1": f"{sid}/T1.nii.gz", "T2": f"{sid}/T2.nii.gz"},
                                mask=f"{sid}/mask.nii.gz"))
    ds = Dataset(root, subjects)
    ds.save()
    return ds


def _run(data, out, method="unet", steps=12, seed=0, on_log=None, recipe_options=None, **kw):
    torch.manual_seed(seed)
    model = create_translator(method, width=8, depth=2 if method == "unet" else 3)
    train = PairedSliceDataset(data, "train", size_multiple=model.spec.size_multiple, augment=True)
    val = PairedSliceDataset(data, "val", size_multiple=model.spec.size_multiple)
    options = dict(steps=steps, batch_size=4, checkpoint_every=4, val_every=6, log_every=1, seed=seed)
    options.update(kw)
    recipe = get_recipe(method, **(recipe_options or {}))
    return Trainer(recipe, model, train, val, out_dir=out, on_log=on_log, **options).fit()


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_recipes_are_registered_by_method():
    assert {"unet", "pix2pix"} <= set(list_recipes())
    assert get_recipe("pix2pix").config["lambda_l1"] == 100.0
    assert get_recipe("pix2pix").config["gan_loss"] == "vanilla"
    with pytest.raises(MedtransError, match="known: .*pix2pix"):
        get_recipe("pix2pixx")
    with pytest.raises(MedtransError, match="unknown regression loss 'l3'"):
        get_recipe("unet", loss="l3")


def test_the_regression_loss_is_what_the_recipe_says(data, tmp_path):
    result = _run(data, tmp_path, steps=3, val_every=0, recipe_options={"loss": "l1+mse"})
    for row in _rows(result.log_jsonl):
        assert row["loss"] == pytest.approx(row["l1"] + row["mse"], rel=1e-5)
        assert row["mse"] < row["l1"]  # errors in [-1, 1] early on: squares are smaller


def test_a_run_can_start_from_another_runs_weights(data, tmp_path):
    """recipe option init: the first step starts from the given checkpoint (its first training loss is the
    loss that checkpoint ends on, far below a fresh model's), and the new checkpoint records the file's hash;
    a checkpoint of another configuration or method is refused, naming the file."""
    first = _run(data, tmp_path / "a", steps=40, val_every=0, lr=3e-3)
    fresh = _rows(_run(data, tmp_path / "b", steps=1, val_every=0, seed=1).log_jsonl)[0]["loss"]
    tuned = _run(data, tmp_path / "c", steps=1, val_every=0, seed=1, recipe_options={"init": first.checkpoint})
    start = _rows(tuned.log_jsonl)[0]["loss"]
    end = np.mean([r["loss"] for r in _rows(first.log_jsonl)[-5:]])
    assert start < 0.5 * fresh and start == pytest.approx(end, rel=0.5)
    from napari_medtrans.translators.checkpoint import read_checkpoint_metadata
    info = read_checkpoint_metadata(tuned.checkpoint)
    assert info.training["recipe"]["init_sha256"] == read_checkpoint_metadata(first.checkpoint).sha256
    wider = create_translator("unet", width=16, depth=2)
    with pytest.raises(MedtransError, match=f"{first.checkpoint.name}.*does not fit"):
        get_recipe("unet", init=first.checkpoint).build(wider)
    other = _run(data, tmp_path / "d", method="pix2pix", steps=1, val_every=0).checkpoint
    with pytest.raises(MedtransError, match="pix2pix"):
        get_recipe("unet", init=other).build(create_translator("unet", width=8, depth=2))


def test_cosine_schedule_runs_from_lr_to_min_lr():
    lrs = [cosine_lr(s, 100, 1e-3, 1e-5) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert cosine_lr(50, 101, 1e-3, 0.0) == pytest.approx(5e-4)
    assert cosine_lr(0, 100, 1e-3, 0.0, warmup=10) == pytest.approx(1e-4)


def test_loss_goes_down_on_an_easy_mapping(data, tmp_path):
    result = _run(data, tmp_path, steps=50, val_every=25, log_every=1, lr=3e-3)
    rows = _rows(result.log_jsonl)
    losses = [r["loss"] for r in rows]
    assert len(losses) == 50
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    vals = [r for r in rows if r["event"] == "val"]
    assert [r["step"] for r in vals] == [25, 50]
    assert vals[-1]["val_psnr"] > vals[0]["val_psnr"]
    assert result.metrics["psnr"] == vals[-1]["val_psnr"]
    assert rows[-1]["lr"] == pytest.approx(3e-5)  # cosine down to lr / 100 at the last step


def test_final_checkpoint_loads_with_statistics_training_info_and_metrics(data, tmp_path):
    from napari_medtrans.translators.checkpoint import load_translator

    result = _run(data, tmp_path, steps=6, seed=3, info={"data": "the-data"})
    assert result.checkpoint == tmp_path / FINAL_CHECKPOINT
    model = load_translator(result.checkpoint)
    info = model.checkpoint_info
    assert info.method == "unet" and model.spec.outputs == ("T2",)
    train = PairedSliceDataset(data, "train")
    assert info.normalisation["outputs"]["T2"] == pytest.approx(train.normalisation["outputs"]["T2"])
    t = info.training
    assert (t["steps"], t["seed"], t["batch_size"], t["data"]) == (6, 3, 4, "the-data")
    assert t["wall_time_s"] > 0 and t["train_subjects"] == ["sub-0", "sub-1", "sub-2"]
    assert set(info.metrics) >= {"psnr", "ssim", "mae", "brain_psnr", "brain_ssim", "brain_mae"}
    assert all(math.isfinite(info.metrics[k]) for k in ("psnr", "ssim", "mae"))
    # The trained weights are what the checkpoint holds.
    x = PairedSliceDataset(data, "val", size_multiple=4)[0]["input"][None]
    trained = torch.load(tmp_path / STATE_FILE, weights_only=True)["modules"]["model"]
    fresh = create_translator("unet", width=8, depth=2).eval()
    fresh.load_state_dict(trained)
    assert torch.equal(fresh.translate(x).image, model.translate(x).image)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["unet", "pix2pix"])
def test_an_interrupted_run_resumes_to_the_same_weights(data, tmp_path, method):
    from safetensors.torch import load_file

    straight = _run(data, tmp_path / "straight", method, steps=10)

    def stop_at_7(row):
        if row["step"] == 7:
            raise _Stop

    with pytest.raises(_Stop):
        _run(data, tmp_path / "cut", method, steps=10, on_log=stop_at_7)
    assert torch.load(tmp_path / "cut" / STATE_FILE, weights_only=True)["step"] == 4
    resumed = _run(data, tmp_path / "cut", method, steps=10)
    assert resumed.resumed_from == 4 and resumed.step == 10
    a, b = load_file(straight.checkpoint), load_file(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The log has each step once, in order, and the same losses.
    steps = [r["step"] for r in _rows(resumed.log_jsonl)]
    assert steps == list(range(1, 11))
    assert [r["loss"] for r in _rows(resumed.log_jsonl)] == [r["loss"] for r in _rows(straight.log_jsonl)]
    header = resumed.log_csv.read_text().splitlines()[0].split(",")
    assert header[:5] == ["event", "step", "epoch", "wall_time_s", "lr"] and "val_psnr" in header
    assert len(resumed.log_csv.read_text().splitlines()) == 11


def test_pix2pix_trains_the_discriminator_too(data, tmp_path):
    result = _run(data, tmp_path, "pix2pix", steps=4, val_every=0)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert set(state["modules"]) == {"model", "discriminator"}
    assert set(state["optimizers"]) == {"generator", "discriminator"}
    assert state["optimizers"]["discriminator"]["param_groups"][0]["betas"] == (0.5, 0.999)
    rows = _rows(result.log_jsonl)
    assert {"loss", "l1", "g_adv", "d"} <= set(rows[0])
    for r in rows:
        assert r["loss"] == pytest.approx(r["g_adv"] + 100 * r["l1"], rel=1e-5)


def test_resume_refuses_a_run_with_another_config(data, tmp_path):
    _run(data, tmp_path, steps=4)
    torch.manual_seed(0)
    other = create_translator("unet", width=16, depth=2)
    train = PairedSliceDataset(data, "train", size_multiple=4)
    with pytest.raises(CheckpointError, match="training_state.pt: .*--no-resume"):
        Trainer("unet", other, train, None, out_dir=tmp_path, steps=8, batch_size=4).fit()
    # Without resume it starts afresh and overwrites.
    result = Trainer("unet", other, train, None, out_dir=tmp_path, steps=2, batch_size=4, resume=False).fit()
    assert result.resumed_from == 0 and [r["step"] for r in _rows(result.log_jsonl)] == [2]


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while unpickling",))


def test_a_training_state_that_carries_code_is_refused(data, tmp_path, capsys):
    import pickle

    (tmp_path / STATE_FILE).write_bytes(pickle.dumps({"format": "x", "payload": _Payload()}))
    model = create_translator("unet", width=8, depth=2)
    train = PairedSliceDataset(data, "train", size_multiple=4)
    with pytest.raises(CheckpointError, match="training_state.pt: cannot read the training state"):
        Trainer("unet", model, train, None, out_dir=tmp_path, steps=2, batch_size=4).fit()
    assert "code ran" not in capsys.readouterr().out


def test_a_finished_run_is_not_repeated(data, tmp_path):
    first = _run(data, tmp_path, steps=4)
    again = _run(data, tmp_path, steps=4)
    assert again.resumed_from == 4 and again.step == 4
    assert again.checkpoint.read_bytes() == first.checkpoint.read_bytes()


class _NanRecipe:
    """A recipe whose loss turns into NaN at its third step (also shows recipes plug in without registering)."""

    name = "nan-test"
    default_lr = 1e-3
    config = {}

    def build(self, model):
        return RecipeParts()

    def training_step(self, batch, model, modules, ctx):
        out = model(batch["input"])
        loss = (out - batch["target"]).abs().mean() * (float("nan") if ctx.step >= 2 else 1.0)
        ctx.optimise("model", loss)
        return {"loss": loss.detach()}


def test_learning_rates_default_to_the_recipe(data):
    model = create_translator("unet", width=8, depth=2)
    train = PairedSliceDataset(data, "train", size_multiple=4)
    recipe = _NanRecipe()
    assert Trainer(recipe, model, train, out_dir=".", steps=1).min_lr == pytest.approx(1e-5)  # lr / 100
    recipe.default_min_lr = 1e-6
    trainer = Trainer(recipe, model, train, out_dir=".", steps=1)
    assert (trainer.lr, trainer.min_lr) == (1e-3, 1e-6)
    assert Trainer("pix2pix", create_translator("pix2pix", width=8, depth=2), train, out_dir=".", steps=1).lr == 2e-4


def test_a_diverging_loss_stops_the_run_with_a_message(data, tmp_path):
    model = create_translator("unet", width=8, depth=2)
    train = PairedSliceDataset(data, "train", size_multiple=4)
    with pytest.raises(TrainingDivergedError, match="loss became NaN/infinite by step 3; lower the learning rate"):
        Trainer(_NanRecipe(), model, train, None, out_dir=tmp_path, steps=10, batch_size=4, log_every=1).fit()


def test_bad_settings_are_named(data, tmp_path):
    model = create_translator("unet", width=8, depth=2)
    train = PairedSliceDataset(data, "train", size_multiple=4)
    with pytest.raises(MedtransError, match="24 slices, fewer than one batch of 32"):
        Trainer("unet", model, train, None, out_dir=tmp_path, steps=2, batch_size=32).fit()
    with pytest.raises(ValueError, match='"steps"'):
        Trainer("unet", model, train, None, out_dir=tmp_path, steps=0)
    with pytest.raises(MedtransError, match="unknown AMP mode 'fp8'"):
        Trainer("unet", model, train, None, out_dir=tmp_path, steps=1, amp="fp8")
    with pytest.raises(ValueError, match="min_lr"):
        Trainer("unet", model, train, None, out_dir=tmp_path, steps=1, lr=1e-4, min_lr=1e-3)


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_on_the_cpu_is_bf16_only_where_the_cpu_computes_it(data, tmp_path, monkeypatch, native):
    """Emulated bf16 made CPU training about ten times slower: "auto" keeps fp32 there, an explicit "bf16" warns;
    the file says which ran."""
    import napari_medtrans.training.trainer as trainer_module
    from napari_medtrans.translators.checkpoint import read_checkpoint_metadata

    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    result = _run(data, tmp_path / "auto", steps=1, val_every=0, amp="auto", device="cpu")
    assert read_checkpoint_metadata(result.checkpoint).training["amp"] == ("bfloat16" if native else "off")
    if native:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # bf16 in hardware: nothing to warn of
            result = _run(data, tmp_path / "bf16", steps=1, val_every=0, amp="bf16", device="cpu")
    else:
        # asked for explicitly it still runs bf16 (the user's choice), with a warning that says what it costs
        with pytest.warns(UserWarning, match="emulated.*--amp auto"):
            result = _run(data, tmp_path / "bf16", steps=1, val_every=0, amp="bf16", device="cpu")
    assert read_checkpoint_metadata(result.checkpoint).training["amp"] == "bfloat16"
