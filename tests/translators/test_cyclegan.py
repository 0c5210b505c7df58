"""CycleGAN (issue 19): the unpaired peer of DisDiff and HiFi-Syn, two ResNet generators in one two-way checkpoint."""

import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators import create_translator, list_translators
from napari_medtrans.translators.checkpoint import load_translator, save_checkpoint, translator_directions
from napari_medtrans.translators.cyclegan import ResnetGenerator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NORM = {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5, "inputs": {"T1": {"lo": 0.0, "hi": 600.0}},
        "outputs": {"T2": {"lo": 0.0, "hi": 500.0}}, "targets": "volume"}


def _model(**kw):
    torch.manual_seed(0)
    return create_translator("cyclegan", **{"preset": "cpu", "width": 4, "n_blocks": 2, **kw})


def _x(seed=1, size=16):
    return torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_registered_with_the_paper_generator():
    assert "cyclegan" in list_translators()
    paper = create_translator("cyclegan")
    assert paper.config["width"] == 64 and paper.config["n_blocks"] == 9
    gen = paper.generator("T1", "T2")
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv2d)]
    # c7s1-64, d128, d256, 9 x R256 (two convs each), u128, u64 (transposed), c7s1-1
    assert convs[0].kernel_size == (7, 7) and convs[0].out_channels == 64
    assert [c.out_channels for c in convs[1:3]] == [128, 256] and convs[1].stride == (2, 2)
    assert len(convs) == 3 + 2 * 9 + 1 and convs[-1].out_channels == 1
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in gen.modules()) == 2
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in gen.modules())
    assert not paper.spec.paired and not paper.spec.stochastic and paper.spec.size_multiple == 4


def test_translate_shape_range_and_size_check():
    model = _model().eval()
    with torch.no_grad():
        y = model.translate(_x()).image
    assert y.shape == (2, 1, 16, 16) and float(y.abs().max()) <= 1
    with pytest.raises(ValueError, match="multiples of 4"):
        model.translate(torch.zeros(1, 1, 18, 18))
    assert ResnetGenerator(1, 1, width=4, n_blocks=1)(_x()).shape == (2, 1, 16, 16)


def test_one_checkpoint_translates_both_ways(tmp_path):
    model = _model().eval()
    path = save_checkpoint(model, tmp_path / "cyclegan.safetensors", normalisation=NORM)
    assert translator_directions(load_translator(path)) == ["T1->T2", "T2->T1"]
    forward = load_translator(path)
    reverse = load_translator(path, direction="T2->T1")
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(forward.translate(x).image, model.generator("T1", "T2")(x))
        torch.testing.assert_close(reverse.translate(x).image, model.generator("T2", "T1")(x))
    assert reverse.normalisation["outputs"] == {"T1": {"lo": 0.0, "hi": 600.0}}
    assert set(model.state_dict()) == set(reverse.state_dict())
    assert all("T1_to_T2" in k or "T2_to_T1" in k for k in model.state_dict())


def test_forward_train_gives_translations_cycles_and_identities():
    model = _model().train()
    out = model.forward_train(_x(1), _x(2))
    assert set(out) == {"fake_t", "fake_s", "rec_s", "rec_t", "idt_t", "idt_s"}
    assert all(v.shape == (2, 1, 16, 16) for v in out.values())
    assert set(model.forward_train(_x(1), _x(2), identity=False)) == {"fake_t", "fake_s", "rec_s", "rec_t"}


def test_bad_config_is_named():
    with pytest.raises(UnknownChoiceError):
        _model(preset="big")
    with pytest.raises(ValueError, match="modalities"):
        _model(source="T2")
    with pytest.raises(ValueError, match="width"):
        _model(width=0)
    with pytest.raises(UnknownChoiceError):
        _model(norm="fancy")
    with pytest.raises(UnknownChoiceError):
        _model().generator("T1", "FLAIR")


def test_a_meta_device_build_draws_nothing_and_imports_no_compiler():
    """Listing models builds them on the meta device; torch's meta `normal_` imports torch._dynamo and triton,
    which crashed the napari process. `meta_device()` skips those draws and puts `normal_` back afterwards."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from napari_medtrans.translators import create_translator\n"
        "from napari_medtrans.translators.base import meta_device\n"
        "before = torch.Tensor.normal_\n"
        "with meta_device():\n"
        "    m = create_translator('cyclegan', preset='cpu')\n"
        "assert next(m.parameters()).device.type == 'meta'\n"
        "assert torch.Tensor.normal_ is before\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
