"""The engine: geometry kept, batches fitted and restored, progress, cancel, seeds, samples, multi-input."""

import inspect
import types

import numpy as np
import pytest
import torch
from torch import nn

from napari_medtrans.core.engine import (
    TranslationResult,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
    translate_volume,
)
from napari_medtrans.core.errors import (
    DeviceUnavailableError,
    GeometryMismatchError,
    InvalidVolumeError,
    TranslationCancelled,
    TranslatorError,
    UnknownChoiceError,
)
from napari_medtrans.core.preprocess import denormalise, normalise, robust_range
from napari_medtrans.core.volume import SourceInfo, Volume
from napari_medtrans.translators.base import (
    TranslationOutput,
    Translator,
    TranslatorSpec,
    create_translator,
    list_translators,
    register_translator,
)


# -- test-only translators --------------------------------------------------------------------------
class TinyConv(Translator):
    """A 3x3 conv + tanh with a "tsm" map; refuses sizes that are not multiples of 8."""

    shapes = []  # class-level: the engine may run a tuned copy of the module on the CPU

    def __init__(self):
        super().__init__(TranslatorSpec("test-engine-tinyconv", size_multiple=8, maps=("tsm",)))
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def translate(self, x, *, steps=None, generator=None):
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"size {tuple(x.shape)} is not a multiple of 8")
        self.shapes.append(tuple(x.shape))
        y = torch.tanh(self.conv(x))
        return TranslationOutput(image=y, maps={"tsm": torch.sigmoid(3 * x)})


class Identity(Translator):
    """Returns its input: shows exactly where every voxel ends up."""

    def __init__(self, size_multiple=8):
        super().__init__(TranslatorSpec("test-engine-identity", size_multiple=size_multiple))

    def translate(self, x, *, steps=None, generator=None):
        if x.shape[-1] % self.spec.size_multiple or x.shape[-2] % self.spec.size_multiple:
            raise ValueError("size not a multiple")
        return TranslationOutput(image=x.clone())


class Noisy(Translator):
    """Stochastic: input plus noise drawn from the generator it is given."""

    steps_seen = []

    def __init__(self):
        super().__init__(TranslatorSpec("test-engine-stochastic", stochastic=True, default_steps=4))

    def translate(self, x, *, steps=None, generator=None):
        self.steps_seen.append(steps)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return TranslationOutput(image=torch.tanh(x + 0.3 * noise))


class TwoInOut(Translator):
    """(T1, T2) -> (T1c, FLAIR): T1c is the T2 channel, FLAIR the T1 channel (shows the channel order)."""

    def __init__(self):
        super().__init__(TranslatorSpec("test-engine-two-input", inputs=("T1", "T2"), outputs=("T1c", "FLAIR")))

    def translate(self, x, *, steps=None, generator=None):
        return TranslationOutput(image=torch.stack([x[:, 1], x[:, 0]], dim=1))


register_translator("test-engine-tinyconv")(TinyConv)
register_translator("test-engine-identity")(Identity)
register_translator("test-engine-stochastic")(Noisy)
register_translator("test-engine-two-input")(TwoInOut)


def _affine():
    a = np.diag([0.9, 0.9, 3.0, 1.0])
    a[:3, 3] = [-20.0, 15.0, 7.5]
    return a


def _volume(shape=(24, 20, 10), modality="T1", path="/data/t1.nii.gz", seed=0, affine=None):
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, np.float32)
    data[2:-2, 2:-2] = rng.uniform(50, 1000, (shape[0] - 4, shape[1] - 4, shape[2]))
    return Volume(data, _affine() if affine is None else affine, modality=modality,
                  source=SourceInfo(kind="nifti", path=path))


# -- basics -----------------------------------------------------------------------------------------
def test_output_keeps_geometry_and_is_marked_synthetic():
    v = _volume()
    tr = TinyConv()
    tr.checkpoint_info = types.SimpleNamespace(sha256="ab" * 32)
    TinyConv.shapes.clear()
    res = translate_volume(v, tr, device="cpu")
    assert isinstance(res, TranslationResult)
    out = res.volume
    assert out.shape == v.shape and np.array_equal(out.affine, v.affine) and out.affine is not v.affine
    assert out.synthetic and not v.synthetic
    assert out.modality == "T2"
    assert np.isfinite(out.data).all() and out.data.dtype == np.float32
    p = out.provenance
    assert p["method"] == "test-engine-tinyconv" and p["checkpoint_sha256"] == "ab" * 32
    assert p["device"] == "cpu" and p["precision"] == resolve_precision("auto", torch.device("cpu"))
    assert p["inputs"] == ["/data/t1.nii.gz"]
    assert p["samples"] == 1 and p["axis"] == 2
    assert res.outputs == {"T2": out} and res.device == "cpu" and res.seconds > 0
    # the declared map comes back on the grid, in its own range
    tsm = res.maps["tsm"]
    assert tsm.shape == v.shape and np.array_equal(tsm.affine, v.affine) and tsm.synthetic
    assert 0.0 <= tsm.data.min() and tsm.data.max() <= 1.0
    # slices were cut along k (3 mm) and padded from 24x20 to 24x24
    assert TinyConv.shapes and all(s[-2:] == (24, 24) for s in TinyConv.shapes)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_odd_sizes_are_restored_voxel_for_voxel(axis):
    v = _volume(shape=(37, 29, 11))
    res = translate_volume(v, Identity(8), axis=axis, batch_size=4)
    rng = robust_range(v.data)
    np.testing.assert_allclose(res.volume.data, denormalise(normalise(v.data, rng), rng), atol=1e-3)
    assert res.volume.provenance["axis"] == axis


def test_output_is_mapped_into_the_checkpoint_target_range():
    v = _volume()
    tr = Identity(1)
    tr.normalisation = {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                        "outputs": {"T2": {"lo": 0.0, "hi": 500.0}}}
    out = translate_volume(v, tr).volume
    rng = robust_range(v.data)
    expected = (normalise(v.data, rng) + 1.0) * 250.0
    np.testing.assert_allclose(out.data, expected, atol=1e-3)
    assert out.data.max() == pytest.approx(500.0) and out.data[v.data == 0].max() == 0.0
    assert out.provenance["output_range"]["hi"] == 500.0


def test_progress_counts_up_to_total_and_partials_assemble_the_volume():
    v = _volume(shape=(16, 16, 10))
    calls, blocks = [], np.full(v.shape, np.nan, np.float32)

    def on_partial(start, stop, block):
        blocks[:, :, start:stop] = block

    res = translate_volume(v, TinyConv(), batch_size=3, progress=lambda d, n: calls.append((d, n)),
                           on_partial=on_partial)
    assert calls == [(3, 10), (6, 10), (9, 10), (10, 10)]
    np.testing.assert_array_equal(blocks, res.volume.data)


def test_cancel_after_first_batch_raises_and_progress_stops():
    v = _volume(shape=(16, 16, 10))
    calls, partials = [], []
    with pytest.raises(TranslationCancelled) as info:
        translate_volume(v, TinyConv(), batch_size=4, progress=lambda d, n: calls.append(d),
                         should_cancel=lambda: len(calls) >= 1, on_partial=lambda a, b, c: partials.append(a))
    assert calls == [4] and partials == [0]
    assert info.value.done == 4 and info.value.total == 10
    assert "nothing was written" in str(info.value)


def test_translator_mode_is_restored():
    tr = TinyConv()
    tr.train()
    translate_volume(_volume(shape=(8, 8, 2)), tr)
    assert tr.training


# -- randomness -------------------------------------------------------------------------------------
def test_same_seed_same_output_other_seed_other_output():
    v = _volume(shape=(16, 12, 6))
    a = translate_volume(v, Noisy(), seed=7, batch_size=4).volume.data
    b = translate_volume(v, Noisy(), seed=7, batch_size=4).volume.data
    c = translate_volume(v, Noisy(), seed=8, batch_size=4).volume.data
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0


def test_unseeded_stochastic_run_records_a_seed_that_reproduces_it():
    v = _volume(shape=(12, 12, 4))
    first = translate_volume(v, Noisy())
    assert isinstance(first.seed, int) and first.volume.provenance["seed"] == first.seed
    again = translate_volume(v, Noisy(), seed=first.seed)
    np.testing.assert_array_equal(first.volume.data, again.volume.data)


def test_samples_give_mean_and_std_of_the_individual_runs():
    v = _volume(shape=(12, 12, 5))
    tr = Noisy()
    Noisy.steps_seen.clear()
    res = translate_volume(v, tr, seed=3, samples=3, steps=2, batch_size=2)
    assert set(Noisy.steps_seen) == {2}  # steps reach the translator
    runs = np.stack([translate_volume(v, Noisy(), seed=3 + i, batch_size=2).volume.data for i in range(3)])
    np.testing.assert_allclose(res.volume.data, runs.mean(axis=0), atol=2e-3)
    std = res.maps["std"]
    assert std.shape == v.shape and np.array_equal(std.affine, v.affine) and std.synthetic
    np.testing.assert_allclose(std.data, runs.std(axis=0, ddof=1), atol=2e-3)
    assert std.data.max() > 1.0  # real spread, not zeros
    assert res.volume.provenance["steps"] == 2
    assert res.volume.provenance["samples"] == 3


def test_samples_on_a_deterministic_translator_is_refused():
    with pytest.raises(ValueError, match="deterministic"):
        translate_volume(_volume(), TinyConv(), samples=2)


# -- inputs ----------------------------------------------------------------------------------------
def test_two_inputs_are_matched_by_name_and_give_two_outputs():
    t1 = _volume(modality="T1", path="/d/t1.nii", seed=1)
    t2 = _volume(modality="T2", path="/d/t2.nii", seed=2)
    tr = TwoInOut()
    tr.normalisation = {"outputs": {"T1c": {"lo": 0.0, "hi": 2.0}, "FLAIR": {"lo": 0.0, "hi": 2.0}}}
    res = translate_volume({"T2": t2, "T1": t1}, tr)
    assert set(res.outputs) == {"T1c", "FLAIR"} and res.volume is res.outputs["T1c"]
    np.testing.assert_allclose(res.outputs["T1c"].data, normalise(t2.data, robust_range(t2.data)) + 1, atol=1e-5)
    np.testing.assert_allclose(res.outputs["FLAIR"].data, normalise(t1.data, robust_range(t1.data)) + 1, atol=1e-5)
    assert all(o.synthetic and np.array_equal(o.affine, t1.affine) for o in res.outputs.values())
    assert res.volume.provenance["inputs"] == ["/d/t1.nii", "/d/t2.nii"]
    same = translate_volume([t1, t2], tr)
    np.testing.assert_array_equal(same.volume.data, res.volume.data)


def test_two_inputs_on_different_grids_are_refused_naming_both_files():
    t1 = _volume(modality="T1", path="/d/t1.nii")
    moved = _affine()
    moved[0, 3] += 4.0
    t2 = _volume(modality="T2", path="/d/t2.nii", affine=moved)
    with pytest.raises(GeometryMismatchError, match=r"t1\.nii.*t2\.nii"):
        translate_volume({"T1": t1, "T2": t2}, TwoInOut())
    other_shape = _volume(shape=(24, 20, 9), modality="T2", path="/d/t2b.nii")
    with pytest.raises(GeometryMismatchError, match=r"t2b\.nii.*\(24, 20, 9\)"):
        translate_volume([t1, other_shape], TwoInOut())


def test_missing_or_swapped_inputs_are_refused():
    t1, t2 = _volume(modality="T1"), _volume(modality="T2", path="/d/t2.nii")
    with pytest.raises(TranslatorError, match="missing T2"):
        translate_volume({"T1": t1}, TwoInOut())
    with pytest.raises(TranslatorError, match="expects T1"):
        translate_volume([t2, t1], TwoInOut())
    with pytest.raises(TranslatorError, match="needs 2 inputs"):
        translate_volume(t1, TwoInOut())


def test_non_3d_or_non_finite_input_is_refused():
    with pytest.raises(InvalidVolumeError, match="3D"):
        translate_volume(np.zeros((16, 16), np.float32), TinyConv())
    v = _volume()
    v.data = v.data[..., 0]  # corrupted after construction
    with pytest.raises(InvalidVolumeError, match=r"t1\.nii\.gz.*3D"):
        translate_volume(v, TinyConv())
    bad = _volume()
    bad.data[3, 3, 3] = np.nan
    with pytest.raises(InvalidVolumeError, match=r"t1\.nii\.gz.*NaN"):
        translate_volume(bad, TinyConv())


def test_a_bare_array_runs_with_an_identity_affine():
    data = np.random.default_rng(0).random((16, 8, 3)).astype(np.float32)
    out = translate_volume(data, Identity(8)).volume
    assert out.shape == data.shape and np.array_equal(out.affine, np.eye(4))


def test_translator_breaking_its_spec_is_reported():
    class Liar(TinyConv):
        def translate(self, x, *, steps=None, generator=None):
            return TranslationOutput(image=torch.tanh(self.conv(x)))  # forgets its "tsm" map

    with pytest.raises(TranslatorError, match="tsm"):
        translate_volume(_volume(shape=(8, 8, 2)), Liar())


class ConvBN(Translator):
    """Conv + BatchNorm + activation blocks, optionally flattening with .view() (fails on channels-last)."""

    def __init__(self, use_view=False):
        super().__init__(TranslatorSpec("test-engine-convbn"))
        self.use_view = use_view
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
                                  nn.ConvTranspose2d(8, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Conv2d(4, 1, 1)
        with torch.no_grad():  # non-trivial running statistics, so that folding them matters
            for bn in (self.body[1], self.body[4]):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)

    def translate(self, x, *, steps=None, generator=None):
        h = self.body(x)
        if self.use_view:
            h = h.view(h.shape[0], -1).view_as(h)  # raises on a channels-last tensor
        return TranslationOutput(image=torch.tanh(self.head(h)))


@pytest.mark.parametrize("use_view", [False, True])
def test_cpu_tuning_changes_nothing_but_speed(use_view):
    v = _volume(shape=(20, 16, 6))
    tr = ConvBN(use_view).eval()
    before = {k: t.clone() for k, t in tr.state_dict().items()}
    res = translate_volume(v, tr, device="cpu", batch_size=4, precision="fp32")
    rng = robust_range(v.data)
    x = torch.from_numpy(normalise(v.data, rng)).permute(2, 0, 1)[:, None]
    with torch.no_grad():
        direct = tr.translate(x).image[:, 0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(res.volume.data, denormalise(direct, rng), rtol=1e-4, atol=1e-3)
    # the caller's module is untouched: same tensors, still with its BatchNorm layers, standard layout
    assert isinstance(tr.body[1], nn.BatchNorm2d)
    assert all(torch.equal(before[k], t) for k, t in tr.state_dict().items())
    assert tr.body[0].weight.is_contiguous()


# -- device, precision, batch size ------------------------------------------------------------------
def test_device_and_precision_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("cpu"), cpu_bf16=False) == "fp32"
    assert resolve_precision("bfloat16", torch.device("cpu")) == "bf16"
    with pytest.raises(UnknownChoiceError, match="gpu"):
        resolve_device("gpu")
    with pytest.raises(UnknownChoiceError, match="fp8.*bf16"):
        resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(ValueError, match="batch_size"):
        translate_volume(_volume(), TinyConv(), batch_size=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        translate_volume(_volume(), TinyConv(), device="cuda")


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_on_cpu_follows_the_hardware(monkeypatch, native):
    # bf16 only where the CPU computes it in hardware (emulated bf16 is slower than fp32)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_native_bf16() is native
    res = translate_volume(_volume(shape=(16, 16, 4)), TinyConv(), device="cpu")
    assert res.precision == ("bf16" if native else "fp32")
    assert res.volume.provenance["precision"] == res.precision


def test_bf16_on_cpu_is_close_to_fp32():
    v = _volume(shape=(16, 16, 4))
    tr = TinyConv()
    a = translate_volume(v, tr, precision="fp32").volume.data
    b = translate_volume(v, tr, precision="bf16")
    assert b.precision == "bf16"
    assert np.abs(a - b.volume.data).max() < 0.02 * float(a.max() - a.min())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    v = _volume(shape=(32, 24, 6))
    tr = TinyConv()
    cpu = translate_volume(v, tr, device="cpu").volume.data
    res = translate_volume(v, tr, device="cuda", precision="fp32")
    assert res.device.startswith("cuda")
    np.testing.assert_allclose(res.volume.data, cpu, atol=1e-2)
    auto = translate_volume(v, tr, device="cuda")  # bf16/fp16 autocast, probed batch size
    assert auto.precision in {"bf16", "fp16"} and np.abs(auto.volume.data - cpu).max() < 0.02 * float(cpu.max())


# -- every registered translator --------------------------------------------------------------------
def _small(name):
    """Build a registered translator at its smallest config when the factory takes width/small keywords."""
    params = inspect.signature(
        __import__("napari_medtrans.translators.base", fromlist=["translator_factory"]).translator_factory(name)
    ).parameters
    for config in ({"small": True}, {"width": 8}, {}):
        if all(k in params for k in config):
            try:
                return create_translator(name, **config)
            except (TypeError, ValueError):
                continue
    return create_translator(name)


@pytest.mark.parametrize("name", list_translators())
def test_every_registered_translator_honours_its_spec(name):
    torch.manual_seed(0)
    tr = _small(name).eval()
    spec = tr.spec
    m = spec.size_multiple
    h, w = spec.image_size or (-(-32 // m) * m, -(-32 // m) * m)
    x = torch.randn(1, len(spec.inputs), h, w).clamp(-1, 1)
    steps = None if spec.default_steps is None else min(2, spec.default_steps)
    gen = torch.Generator().manual_seed(0) if spec.stochastic else None
    with torch.inference_mode():
        out = tr.translate(x, steps=steps, generator=gen)
    assert tuple(out.image.shape) == (1, len(spec.outputs), h, w)
    assert torch.isfinite(out.image).all()
    assert float(out.image.min()) >= -1.0 - 1e-4 and float(out.image.max()) <= 1.0 + 1e-4
    for mname in spec.maps:
        assert mname in out.maps and out.maps[mname].shape[0] == 1 and tuple(out.maps[mname].shape[-2:]) == (h, w)
        assert torch.isfinite(out.maps[mname]).all()
    # and the engine runs it on an odd-sized volume, restoring the grid
    vols = {mod: _volume(shape=(h - 3 if h > 8 else h, w - 5 if w > 8 else w, 2), modality=mod, seed=i)
            for i, mod in enumerate(spec.inputs)}
    res = translate_volume(vols, tr, steps=steps, seed=0, batch_size=2)
    first = next(iter(vols.values()))
    assert res.volume.shape == first.shape and np.isfinite(res.volume.data).all()
    assert set(res.outputs) == set(spec.outputs)
    for mname in spec.maps:
        assert mname in res.maps or any(k.startswith(mname + "_") for k in res.maps)


def test_cancel_stops_a_diffusion_model_within_a_sampling_step():
    """Cancel during a slice of EDTS-Trans (one call runs the whole sampling chain) stops at the next step."""
    from napari_medtrans.translators import create_translator

    model = create_translator("edts-trans", preset="cpu", width=4, depth=2, default_steps=40)
    evaluations = []
    denoise = model.denoise
    model.denoise = lambda *a, **k: evaluations.append(1) or denoise(*a, **k)
    asked = []

    def should_cancel():
        asked.append(1)
        return len(evaluations) >= 3  # the user presses Cancel during the first slice's third step

    with pytest.raises(TranslationCancelled) as info:
        translate_volume(_volume(shape=(16, 16, 4)), model, batch_size=1, should_cancel=should_cancel, seed=0)
    assert len(evaluations) == 3  # not the 40 steps of the slice
    assert info.value.done == 0 and info.value.total == 4
