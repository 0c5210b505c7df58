"""Issue 19, item 4: a two-way checkpoint (DisDiff, HiFi-Syn, CycleGAN) sees each modality in training as the
engine will feed it when that modality is the input of its direction.

The engine normalises every input volume from its own robust range (``core/engine.py``); in a two-way model both
modalities are inputs of one direction, so both must be normalised per volume in training too. The recipes say so
(``recipe.target_norm``); the test builds the training set as ``medtrans train`` does and compares its slices with
what the engine hands the network.
"""

import numpy as np
import pytest
import torch

from napari_medtrans.core import io
from napari_medtrans.core.engine import translate_volume
from napari_medtrans.phantom import write_phantom_dataset
from napari_medtrans.training.datasets import UnpairedSliceDataset
from napari_medtrans.training.recipes import get_recipe
from napari_medtrans.translators.base import TranslationOutput, Translator, TranslatorSpec
from napari_medtrans.translators.direction import _normalisation_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TWO_WAY = ("disdiff", "hifi-syn", "cyclegan")
SEEN: list[torch.Tensor] = []  # module level: the engine may run a copy of the spy


class _Spy(Translator):
    """Records the normalised slices the engine feeds it and returns a blank image."""

    def __init__(self, source, target):
        super().__init__(TranslatorSpec("spy", inputs=(source,), outputs=(target,), paired=False), {})

    def translate(self, x, *, steps=None, generator=None):
        SEEN.append(x.detach().clone())
        return TranslationOutput(image=torch.zeros_like(x))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, 4, seed=0, shape=(32, 32, 12), contrasts=("T1", "T2"), split=(0.5, 0.25, 0.25))
    return root


def _training_set(phantom, target_norm, labels=False):
    """The training set ``medtrans train`` builds for an unpaired recipe (T1 -> T2, axis 2, no augmentation)."""
    return UnpairedSliceDataset(phantom, "train", inputs=("T1",), outputs=("T2",), axis=2, size_multiple=4,
                                min_foreground=0.05, target_norm=target_norm, labels=labels, augment=False)


def _engine_slices(phantom, subject_id, modality):
    """``{k: [H, W]}``: what the engine feeds a translator for slice ``k`` of this subject's ``modality``."""
    path = next(phantom.glob(f"{subject_id}/{modality}.nii.gz"))
    SEEN.clear()
    translate_volume(io.load(path, modality=modality), _Spy(modality, "T2" if modality == "T1" else "T1"),
                     device="cpu", precision="fp32", batch_size=64, axis=2)
    x = torch.cat(SEEN)[:, 0]
    return {k: x[k] for k in range(x.shape[0])}


def _largest_difference(phantom, ds) -> dict[str, float]:
    """Per modality, the largest difference between a training slice and the engine's input slice."""
    worst = {}
    for modality, pool in (("T1", ds.source), ("T2", ds.target)):
        engine = {s.id: _engine_slices(phantom, s.id, modality) for s in pool.subjects}
        diff = 0.0
        for item in range(len(pool)):
            sid, k, img, _, _ = pool.slice(item)
            diff = max(diff, float((img[0] - engine[sid][k]).abs().max()))
        worst[modality] = diff
    return worst


@pytest.mark.parametrize("method", TWO_WAY)
def test_both_modalities_are_normalised_as_the_engine_normalises_inputs(phantom, method):
    recipe = get_recipe(method)
    assert getattr(recipe, "unpaired", False) and recipe.target_norm == "volume"
    ds = _training_set(phantom, recipe.target_norm, labels=getattr(recipe, "needs_labels", False))
    worst = _largest_difference(phantom, ds)
    assert worst["T1"] < 1e-5 and worst["T2"] < 1e-5, worst
    # and the checkpoint maps the outputs of both directions from per-volume statistics alike
    norm = ds.normalisation
    reverse = _normalisation_for(norm, ("T2",), ("T1",), "T1->T2", "test")
    assert norm["targets"] == reverse["targets"] == "volume"


def test_the_check_fails_for_targets_normalised_over_the_dataset(phantom):
    """The shipped models' setting (``--target-norm dataset``): T2 in training is not T2 at inference."""
    ds = _training_set(phantom, "dataset")
    worst = _largest_difference(phantom, ds)
    assert worst["T1"] < 1e-5 and worst["T2"] > 0.05
    reverse = _normalisation_for(ds.normalisation, ("T2",), ("T1",), "T1->T2", "test")
    assert ds.normalisation["targets"] != reverse["targets"]
    assert np.isfinite(worst["T2"])


def test_medtrans_train_refuses_dataset_normalisation_for_two_way_methods(phantom, tmp_path, capsys):
    from napari_medtrans.cli import main

    assert main(["train", "--method", "hifi-syn", "--data", str(phantom), "--out", str(tmp_path / "run"),
                 "--inputs", "T1", "--outputs", "T2", "--target-norm", "dataset", "--steps", "1"]) == 2
    assert "--target-norm volume" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.safetensors").exists()
