"""`medtrans segmenter train`: trains, resumes, starts from another file's weights, refuses data without tumours."""

import pytest

pytest.importorskip("torch")

from napari_medtrans.cli import main  # noqa: E402
from napari_medtrans.phantom import write_phantom_dataset  # noqa: E402
from napari_medtrans.segment.promptnet import load_promptunet  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ["--width", "4", "--depth", "2", "--batch-size", "2", "--crop", "32", "--log-every", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "data"
    write_phantom_dataset(root, 3, shape=(48, 56, 16), tumour=1.0, split=(1.0, 0.0, 0.0),
                          contrasts=("T1", "FLAIR"))
    return root


def _weights(path):
    model, meta = load_promptunet(path)
    return {k: v.clone() for k, v in model.state_dict().items()}, meta


def test_train_resume_and_start_from_weights(data, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["segmenter", "train", "--data", str(data), "--out", str(out), "--steps", "3", *TINY]) == 0
    first, meta = _weights(out / "model.safetensors")
    assert meta["steps"] == "3" and "segmenter train" in meta["command"]
    # The same command again: resumes at the end, nothing more is trained.
    assert main(["segmenter", "train", "--data", str(data), "--out", str(out), "--steps", "3", *TINY]) == 0
    assert "resuming at step 3" in capsys.readouterr().out
    again, _ = _weights(out / "model.safetensors")
    assert all((first[k] == again[k]).all() for k in first)
    # --init: a new run starts from those weights (a zero learning rate keeps them), its own width ignored.
    tuned = tmp_path / "b"
    assert main(["segmenter", "train", "--data", str(data), "--out", str(tuned), "--steps", "1", "--lr", "0",
                 "--init", str(out / "model.safetensors"), *TINY[2:], "--width", "8"]) == 0
    assert "starting from the weights of" in capsys.readouterr().out
    start, meta = _weights(tuned / "model.safetensors")
    assert all(((first[k] - start[k]).abs().max() < 1e-6) for k in first if first[k].is_floating_point())
    assert '"init"' in meta["training"] and '"width": 4' in meta["training"]
    # the recorded command repeats the run: no --width that --init overrode
    assert "--init" in meta["command"] and "--width" not in meta["command"] and "--depth" not in meta["command"]


def test_data_without_tumours_is_refused_naming_the_dataset(tmp_path, capsys):
    root = tmp_path / "healthy"
    write_phantom_dataset(root, 2, shape=(32, 32, 8), tumour=False, split=(1.0, 0.0, 0.0), contrasts=("T1",))
    assert main(["segmenter", "train", "--data", str(root), "--out", str(tmp_path / "o"), "--steps", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert str(root) in err and "no training subject has tumour labels" in err


def _contrasts_drawn(n, **kw):
    """Which contrasts :func:`_example` draws each region from, over ``n`` examples of a toy subject with an
    oedema and a rim on four contrasts; also the contrasts the subject has."""
    import numpy as np

    from napari_medtrans.segment.train import _Subject, _example

    labels = np.zeros((6, 40, 40), np.uint8)
    labels[1:5, 10:30, 10:30] = 4  # oedema
    labels[2:4, 16:24, 16:24] = 5  # rim
    frames = {c: np.full((6, 40, 40), i * 40 + 20, np.uint8) for i, c in enumerate(("T1", "T2", "FLAIR", "T1c"))}
    subj = _Subject("s", frames, labels)
    rng = np.random.default_rng(0)
    seen = {"whole": set(), "core": set(), "enhancing": set()}
    for _ in range(n):
        info = {}
        _example([subj], rng, 32, info=info, **kw)
        seen[info["region"]].add(info["contrast"])
    return seen, set(frames)


def test_whole_tumour_examples_come_only_from_contrasts_that_show_the_oedema():
    """A box around the whole tumour on a T1 or T1c (where the oedema does not show) can only be answered by
    filling the box; such examples taught the network to over-include on FLAIR too. Whole-tumour examples are
    drawn from the contrasts of REGION_CONTRASTS["whole"]; core and rim from every contrast."""
    from napari_medtrans.segment.train import REGION_CONTRASTS

    seen, contrasts = _contrasts_drawn(600)
    assert seen["whole"] == {"T2", "FLAIR"} == set(REGION_CONTRASTS["whole"]) & contrasts
    assert seen["core"] == seen["enhancing"] == contrasts


def test_whole_contrasts_option_narrows_the_whole_tumour_examples():
    """SegTrainConfig.whole_contrasts (CLI --whole-contrasts) overrides REGION_CONTRASTS["whole"] for one run; core
    and rim still come from every contrast."""
    seen, contrasts = _contrasts_drawn(400, whole_contrasts=("FLAIR",))
    assert seen["whole"] == {"FLAIR"}
    assert seen["core"] == seen["enhancing"] == contrasts


def test_whole_contrasts_on_the_command_line(tmp_path):
    from napari_medtrans.cli import build_parser

    args = build_parser().parse_args(["segmenter", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--whole-contrasts", "FLAIR", "PD"])
    assert args.whole_contrasts == ["FLAIR", "PD"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["segmenter", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                   "--whole-contrasts", "CT"])


def test_gamma_option_sets_the_augmentation_range(tmp_path):
    """--gamma LO HI narrows the random gamma; gamma 1..1 leaves the windowed intensities' order and level (up to
    the brightness and noise jitter)."""
    import numpy as np

    from napari_medtrans.cli import build_parser
    from napari_medtrans.segment.train import _augment

    img = np.full((20, 20), 0.25, np.float32)
    img[:, 10:] = 0.75
    spread = []
    for gamma in ((1.0, 1.0), (0.7, 1.5)):
        rng = np.random.default_rng(0)
        est = []
        for _ in range(40):  # the gamma drawn, read off two flat regions (the brightness factor cancels)
            out = _augment(img, rng, gamma)
            est.append(np.log(out[:, 2:6].mean() / out[:, 14:18].mean()) / np.log(0.25 / 0.75))
        spread.append(np.std(est))
    assert spread[0] < 0.2 * spread[1]
    args = build_parser().parse_args(["segmenter", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--gamma", "0.9", "1.1"])
    assert args.gamma == [0.9, 1.1]
    assert main(["segmenter", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--gamma", "1.2", "0.8"]) != 0


def test_brightness_option_sets_the_intensity_scale_range(tmp_path):
    """--brightness LO HI sets the random intensity scale; 1..1 keeps a region's windowed level (a fixed boundary
    intensity stays learnable), the default 0.85..1.15 moves it by up to 15 %."""
    import numpy as np

    from napari_medtrans.cli import build_parser
    from napari_medtrans.segment.train import _augment

    img = np.full((20, 20), 0.5, np.float32)
    levels = {}
    for brightness in ((1.0, 1.0), (0.85, 1.15)):
        rng = np.random.default_rng(0)
        levels[brightness] = [float(_augment(img, rng, (1.0, 1.0), brightness).mean()) for _ in range(40)]
    assert np.ptp(levels[(1.0, 1.0)]) < 0.01
    assert np.ptp(levels[(0.85, 1.15)]) > 0.1
    args = build_parser().parse_args(["segmenter", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--brightness", "1", "1"])
    assert args.brightness == [1.0, 1.0]
    assert main(["segmenter", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--brightness", "1.1", "0.9"]) != 0


def test_snapshots_keep_the_weights_of_every_checkpoint(data, tmp_path):
    """--snapshots writes step-NNNNNN.safetensors at every checkpoint (to choose a step on validation); the last
    one holds the final weights, and the recorded command repeats the flag."""
    out = tmp_path / "snap"
    assert main(["segmenter", "train", "--data", str(data), "--out", str(out), "--steps", "4",
                 "--checkpoint-every", "2", "--snapshots", *TINY]) == 0
    assert sorted(p.name for p in out.glob("step-*.safetensors")) == ["step-000002.safetensors",
                                                                       "step-000004.safetensors"]
    mid, meta_mid = _weights(out / "step-000002.safetensors")
    last, meta_last = _weights(out / "step-000004.safetensors")
    final, meta = _weights(out / "model.safetensors")
    assert meta_mid["steps"] == "2" and meta_last["steps"] == meta["steps"] == "4"
    assert all((last[k] == final[k]).all() for k in final)
    assert any((mid[k] != final[k]).any() for k in final)
    assert " --snapshots" in meta["command"] and "False" not in meta["command"]


def test_bf16_on_a_cpu_that_emulates_it_warns(data, tmp_path, monkeypatch):
    """--amp bf16 is the user's choice and runs; on a CPU without bf16 in hardware it warns that a step can take ten
    times as long (the project's AVX2 machine: over 13 s a HiFi-Syn step against 1.8 s in fp32)."""
    import warnings

    import napari_medtrans.core.engine as engine

    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated.*--amp auto"):
        assert main(["segmenter", "train", "--data", str(data), "--out", str(tmp_path / "e"), "--steps", "1",
                     "--amp", "bf16", *TINY]) == 0
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["segmenter", "train", "--data", str(data), "--out", str(tmp_path / "n"), "--steps", "1",
                     "--amp", "bf16", *TINY]) == 0
