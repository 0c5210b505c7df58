"""`medtrans train` on a small phantom dataset: checkpoint, resume, options, errors, torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch

from napari_medtrans.cli import main
from napari_medtrans.phantom import write_phantom_dataset
from napari_medtrans.translators.checkpoint import load_translator, read_checkpoint_metadata


# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, 4, seed=0, shape=(32, 32, 16), contrasts=("T1", "T2"), split=(0.5, 0.25, 0.25))
    return root


def _train(phantom, out, *extra, method="unet", steps=6):
    return main(["train", "--method", method, "--data", str(phantom), "--out", str(out), "--width", "8",
                 "--depth", "3", "--steps", str(steps), "--batch-size", "4", "--val-every", "3",
                 "--checkpoint-every", "3", "--log-every", "2", *extra])


def _steps(out):
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_train_writes_a_checkpoint_that_loads_and_a_rerun_resumes(phantom, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(phantom, out) == 0
    text = capsys.readouterr().out
    assert "training unet T1 -> T2" in text
    assert "training slices from 2 subjects" in text and "validation slices from 1 subjects" in text
    assert "step 6" in text and "val psnr" in text
    assert f"checkpoint: {out / 'model.safetensors'}" in text

    model = load_translator(out / "model.safetensors")
    assert model.spec.method == "unet" and model.config["width"] == 8 and model.spec.size_multiple == 8
    info = read_checkpoint_metadata(out / "model.safetensors")
    assert info.training["command"].startswith("medtrans train ")
    assert "--method unet" in info.training["command"] and "--steps 6" in info.training["command"]
    assert info.training["data"] == str(phantom.resolve())
    assert info.training["steps"] == 6 and info.training["seed"] == 0
    assert info.normalisation["outputs"]["T2"]["hi"] > info.normalisation["outputs"]["T2"]["lo"]
    assert info.metrics["psnr"] > 0

    # The same command with more steps continues from step 6.
    assert _train(phantom, out, steps=10) == 0
    text = capsys.readouterr().out
    assert "resumed from step 6" in text and "trained 10 steps" in text
    assert _steps(out) == [2, 3, 4, 6, 8, 9, 10]
    assert read_checkpoint_metadata(out / "model.safetensors").training["steps"] == 10

    # --no-resume starts again from step 0.
    assert _train(phantom, out, "--no-resume", steps=2) == 0
    assert "resumed" not in capsys.readouterr().out
    assert _steps(out) == [2]


def test_pix2pix_options_reach_the_recipe(phantom, tmp_path, capsys):
    out = tmp_path / "p2p"
    assert _train(phantom, out, "--lambda-l1", "50", "--gan-loss", "lsgan", "--size", "32", "32",
                  method="pix2pix", steps=3) == 0
    assert "training pix2pix" in capsys.readouterr().out
    info = read_checkpoint_metadata(out / "model.safetensors")
    assert info.training["recipe"]["lambda_l1"] == 50.0 and info.training["recipe"]["gan_loss"] == "lsgan"
    assert info.training["size"] == [32, 32]


def test_config_and_recipe_options_reach_any_method(phantom, tmp_path, capsys):
    out = tmp_path / "unet-opts"
    assert _train(phantom, out, "--config", "convs=1", "act=relu", "--recipe-option", "loss=mse",
                  steps=2) == 0
    info = read_checkpoint_metadata(out / "model.safetensors")
    assert info.config["convs"] == 1 and info.config["act"] == "relu"
    assert info.training["recipe"]["loss"] == "mse"
    capsys.readouterr()
    assert _train(phantom, tmp_path / "bad", "--config", "no_such_option=3", steps=1) == 2
    assert "no_such_option" in capsys.readouterr().err
    assert _train(phantom, tmp_path / "bad2", "--config", "convs", steps=1) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_a_finished_model_without_training_state_is_never_overwritten_silently(phantom, tmp_path, capsys):
    out = tmp_path / "done"
    assert _train(phantom, out, steps=2) == 0
    (out / "training_state.pt").unlink()
    before = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert _train(phantom, out, steps=2) == 2
    assert "no training_state.pt to resume from" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before
    assert _train(phantom, out, "--no-resume", steps=2) == 0  # explicit: start again


def test_validation_sees_whole_slices_normalised_like_the_training_targets(phantom, tmp_path, capsys,
                                                                           monkeypatch):
    from napari_medtrans.training.trainer import Trainer

    seen = {}
    fit = Trainer.fit

    def spy(self):
        seen.update(train=self.train_ds, val=self.val_ds)
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", spy)
    out = tmp_path / "crops"
    assert _train(phantom, out, "--size", "16", "16", "--target-norm", "dataset", steps=2) == 0
    assert "slices 16x16" in capsys.readouterr().out
    assert (seen["train"].size, seen["val"].size) == ((16, 16), (32, 32))
    assert seen["val"].target_norm == "dataset"
    assert seen["val"].normalisation["outputs"] == seen["train"].normalisation["outputs"]
    info = read_checkpoint_metadata(out / "model.safetensors")
    assert info.training["size"] == [16, 16]
    assert info.normalisation["targets"] == "dataset"
    assert info.normalisation["outputs"] == seen["train"].normalisation["outputs"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "pixtopix"], "unknown training method 'pixtopix'; known: "),
        (["--method", "pixtopix"], "pix2pix, unet. Did you mean 'pix2pix'?"),
        (["--method", "unet", "--gan-loss", "lsgan"], "--gan-loss applies to pix2pix, not unet"),
        (["--method", "pix2pix", "--loss", "mse"], "--loss applies to unet, not pix2pix"),
        (["--method", "unet", "--norm", "batchnorm"], "unknown normalisation 'batchnorm'"),
        (["--method", "unet", "--outputs", "FLAIR"], "subject sub-002 has no FLAIR image"),
    ],
)
def test_mistakes_are_reported_without_a_traceback(phantom, tmp_path, capsys, args, message):
    rc = main(["train", "--data", str(phantom), "--out", str(tmp_path / "x"), "--steps", "1", *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_missing_data_folder_is_named(tmp_path, capsys):
    rc = main(["train", "--method", "unet", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "nope") in err


@pytest.mark.slow
def test_torchrun_trains_with_two_processes_on_the_cpu(phantom, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "napari_medtrans.cli", "train", "--method", "pix2pix", "--data", str(phantom), "--out", str(out),
           "--width", "8", "--depth", "3", "--steps", "4", "--batch-size", "2", "--val-every", "2",
           "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("checkpoint:") == 1  # only rank 0 talks
    info = read_checkpoint_metadata(out / "model.safetensors")
    assert info.training["world_size"] == 2 and info.training["steps"] == 4
    assert _steps(out) == [1, 2, 3, 4]
    assert load_translator(out / "model.safetensors").spec.method == "pix2pix"


def test_the_recorded_command_parses_again_when_list_options_are_empty():
    """A run without --recipe-option recorded a bare `--recipe-option` in its checkpoint: not a command that runs."""
    import shlex

    from napari_medtrans._cli.train import _command
    from napari_medtrans.cli import build_parser

    args = build_parser().parse_args(["train", "--method", "unet", "--data", "d", "--out", "o"])
    line = _command(args)
    assert "--recipe-option" not in line
    again = build_parser().parse_args(shlex.split(line)[1:])
    assert again.method == "unet" and again.steps == args.steps
