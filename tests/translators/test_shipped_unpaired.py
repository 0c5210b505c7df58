"""The shipped DisDiff and HiFi-Syn checkpoints (resources/models) and issue 19.

* The files shipped before issue 19 hold configs without the new mechanism keys; they must keep loading into the
  old mechanisms and give exactly the output they gave (values recorded before the change, both directions).
  These checks apply to those files only (by sha256): a retrained file skips them.
* A retrained file (its config names ``attr_injection="adain"``) must show the mechanisms at work, as the random
  init models of ``test_unpaired_mechanisms.py`` do. Until the models are retrained these checks skip.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_medtrans.translators.checkpoint import load_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"

#: sha256 of the files shipped before issue 19.
OLD_FILES = {
    "disdiff-t1-t2": "818795b359b3bc6d1f1c4a481d09d6faf22e793090658aa05b3783d241c2f947",
    "hifisyn-t1-t2": "849cd80476f4b76d052b2e0bd5210867aead762b2e3d9c3e85bd966749191507",
}

#: Their outputs before issue 19 on ``_input()`` (``steps=2``, seed 5): every 171st value, mean, std.
RECORDED = {
    "disdiff-t1-t2 T1->T2": ([-0.99981, -0.33586, -0.5199, -0.00924, -0.0825, 0.31493, 0.30077, -0.15507, 0.3106,
                              -0.46191, -0.48819, -0.14194], -0.167994, 0.487399),
    "disdiff-t1-t2 T2->T1": ([0.04591, -0.2525, -0.7149, -0.84333, -0.42645, -0.66302, -0.64434, 0.01717, -0.97944,
                              -0.31199, -0.00801, -0.5441], -0.533828, 0.305392),
    "hifisyn-t1-t2 T1->T2": ([-0.7226, 0.09457, -0.12623, 0.97776, 0.43528, -0.32493, 0.88411, 0.99137, -0.49419,
                              -0.0919, -0.07314, -0.09789], -0.123722, 0.553456),
    "hifisyn-t1-t2 T2->T1": ([-0.41681, -0.31744, -0.55358, -0.82912, -0.27212, -0.40869, -0.46379, -0.49175,
                              -0.66164, -0.52867, -0.27288, -0.6955], -0.491367, 0.292756),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _input() -> torch.Tensor:
    return torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _path(name: str) -> Path:
    path = MODELS / f"{name}.safetensors"
    if not path.exists():
        pytest.skip(f"{path.name} is not shipped")
    return path


@pytest.mark.parametrize("key", sorted(RECORDED))
def test_old_checkpoints_load_the_old_mechanisms_and_give_the_same_output(key):
    name, direction = key.split(" ")
    path = _path(name)
    if _sha256(path) != OLD_FILES[name]:
        pytest.skip(f"{path.name} was retrained after issue 19; the recorded output is the old file's")
    model = load_translator(path, direction=direction).eval()
    assert model.config.get("attr_injection") is None  # the key did not exist when the file was written
    assert all(g.injection == "concat" for g in model.net.gen.values())
    with torch.no_grad():
        y = model.translate(_input(), steps=2, generator=torch.Generator().manual_seed(5)).image
    values, mean, std = RECORDED[key]
    torch.testing.assert_close(y.flatten()[::171], torch.tensor(values), atol=2e-5, rtol=0)
    assert float(y.mean()) == pytest.approx(mean, abs=2e-6) and float(y.std()) == pytest.approx(std, abs=2e-6)


@pytest.mark.parametrize("name", sorted(OLD_FILES))
def test_a_retrained_checkpoint_uses_its_attribute(name):
    from test_unpaired_mechanisms import EFFECT, change, toy_brain

    path = _path(name)
    model = load_translator(path).eval()
    if model.config.get("attr_injection") != "adain":
        pytest.skip(f"{path.name} predates issue 19 (inert attribute); retrain it with the recipe")
    net = model.net
    t1, _ = toy_brain()
    with torch.no_grad():
        content = net.enc_c["T1"](t1)
        if name.startswith("hifisyn"):
            own, other = model.bank.read(content, "T2"), model.bank.read(content, "T1")
        else:
            own, other = net.mean_attribute("T2", 2), net.mean_attribute("T1", 2)
        a, b = net.decode(content, own, "T2"), net.decode(content, other, "T2")
    assert change(a, b) > EFFECT


@pytest.mark.parametrize("name", ["disdiff-t1-t2", "hifisyn-t1-t2", "cyclegan-t1-t2"])
def test_a_shipped_unpaired_model_orders_the_tissues_as_the_target_contrast_does(name):
    """Issue 19: the retrained files (cards: resources/models/*-t1-t2.md) turn T1's tissue order into T2's and keep
    the tumour, both ways, on a phantom subject they never saw, on the benchmark's grid (the files shipped before kept
    T1's order). On a coarser grid (80 x 96 x 56) the CycleGAN's tumour fell to the white matter's level: the models
    are trained at the benchmark's resolution."""
    from napari_medtrans.core.engine import translate_volume
    from napari_medtrans.phantom import make_subject

    path = _path(name)
    if _sha256(path) in OLD_FILES.values():
        pytest.skip(f"{path.name} predates issue 19")
    s = make_subject(90, tumour=True)  # the benchmark's default grid, 120 x 144 x 88
    lab = np.rint(s.labels.data)
    csf, wm, tumour = lab == 1, lab == 3, (lab >= 4) & (lab <= 6)
    for direction, source, target in (("T1->T2", "T1", "T2"), ("T2->T1", "T2", "T1")):
        model = load_translator(path, direction=direction)
        out = translate_volume(s.images[source], model, device="cpu", seed=0, precision="fp32").volume.data
        if target == "T2":
            assert out[csf].mean() > out[wm].mean() and out[tumour].mean() > out[wm].mean(), direction
        else:
            assert out[wm].mean() > out[csf].mean() and out[tumour].mean() < out[wm].mean(), direction
