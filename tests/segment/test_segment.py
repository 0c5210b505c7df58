"""SAM2 / MedSAM2 wrappers on a tiny random-weight SAM2 (nothing downloaded): frames, prompts, propagation order,
embedding cache, cancellation and the predictor state."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from napari_medtrans.core.errors import SegmentationCancelled, UnknownChoiceError  # noqa: E402
from napari_medtrans.segment import (  # noqa: E402
    EmbeddingCache,
    FrameGeometry,
    Segmenter,
    SlicePrompt,
    resolve_window,
)
from napari_medtrans.segment._tiny import tiny_sam2  # noqa: E402
from napari_medtrans.segment.frames import IMAGENET_MEAN, IMAGENET_STD, frame_tensor, window_to_uint8  # noqa: E402
from napari_medtrans.core.volume import Volume  # noqa: E402

RAS = np.diag([1.0, 1.0, 2.0, 1.0])


# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_sam2(64)


@pytest.fixture
def seg(model):
    return Segmenter(model, name="tiny")


def _volume(seed=0, shape=(40, 48, 6), affine=RAS):
    rng = np.random.default_rng(seed)
    data = rng.random(shape).astype(np.float32) * 100
    data[:, :, :] += np.linspace(0, 50, shape[0], dtype=np.float32)[:, None, None]
    return Volume(data, affine)


class _Spy:
    """Wrap a bound method of the model on the instance, recording every call's arguments."""

    def __init__(self, monkeypatch, obj, name):
        self.calls = []
        orig = getattr(obj, name)

        def wrapper(*args, **kwargs):
            self.calls.append((args, kwargs))
            return orig(*args, **kwargs)

        monkeypatch.setattr(obj, name, wrapper)


# -- frames and preprocessing ------------------------------------------------------------------------------
def test_frames_are_radiological_axial_and_round_trip():
    vol = _volume(shape=(5, 6, 4))
    geom = FrameGeometry.of(vol)
    frames = geom.to_frames(vol.data)
    assert frames.shape == geom.shape == (4, 6, 5)
    # RAS: row 0 is the most anterior voxel (largest j), column 0 the patient's right (largest i)
    assert frames[2, 0, 0] == vol.data[4, 5, 2]
    assert frames[2, 5, 4] == vol.data[0, 0, 2]
    np.testing.assert_array_equal(geom.to_volume(frames), vol.data)
    s, x, y = geom.index_to_frame((4, 5, 2))
    assert (s, x, y) == (2, 0.0, 0.0)
    idx = geom.frame_to_index(3, 1.5, 2.0)
    np.testing.assert_allclose(idx, (5 - 1 - 1.5, 6 - 1 - 2.0, 3))
    assert geom.index_to_frame(idx) == (3, 1.5, 2.0)


def test_same_anatomy_stored_differently_gives_the_same_frames():
    ras = _volume(shape=(5, 6, 4))
    # The same voxels stored with the axes in another order, two of them reversed:
    # index (a, b, c) of `data` is index (4 - c, 5 - b, a) of the RAS volume.
    data = ras.data[::-1, ::-1, :].transpose(2, 1, 0)
    index_map = np.array([[0, 0, -1, 4], [0, -1, 0, 5], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    affine = ras.affine @ index_map
    other = Volume(np.ascontiguousarray(data), affine)
    np.testing.assert_array_equal(FrameGeometry.of(other).to_frames(other.data),
                                  FrameGeometry.of(ras).to_frames(ras.data))


def test_window_uint8_and_model_input_follow_medsam2():
    img = np.array([[-5.0, 0.0], [50.0, 200.0]], dtype=np.float32)
    from napari_medtrans.segment import Window

    u8 = window_to_uint8(img, Window(0.0, 100.0))
    np.testing.assert_array_equal(u8, [[0, 0], [128, 255]])
    t = frame_tensor(np.full((8, 8), 255, np.uint8), 16)
    assert tuple(t.shape) == (3, 16, 16)
    for c in range(3):
        assert torch.allclose(t[c], torch.full((16, 16), (1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]), atol=1e-5)


def test_default_window_is_nonzero_percentiles():
    data = np.zeros((10, 10, 10), np.float32)
    data[2:8, 2:8, 2:8] = np.arange(216, dtype=np.float32).reshape(6, 6, 6) + 1
    w = resolve_window(data)
    vals = data[data != 0]
    assert w.lo == pytest.approx(np.percentile(vals, 0.5)) and w.hi == pytest.approx(np.percentile(vals, 99.5))
    assert resolve_window(data, (1, 3)).hi == 3.0
    with pytest.raises(ValueError, match="window"):
        resolve_window(data, (3, 1))


def test_model_input_is_the_windowed_resized_slice(seg, monkeypatch):
    vol = _volume()
    spy = _Spy(monkeypatch, seg.model, "forward_image")
    res = seg.segment_slices(vol, SlicePrompt(2, box=(3, 3, 20, 20)), window=(10, 90))
    assert res.embeddings_computed == 1
    image = spy.calls[0][0][0]
    geom = FrameGeometry.of(vol)
    expected = frame_tensor(window_to_uint8(geom.to_frames(vol.data)[2], res.window), 64)
    assert tuple(image.shape) == (1, 3, 64, 64)
    torch.testing.assert_close(image[0], expected)


# -- prompts -----------------------------------------------------------------------------------------------
def test_prompts_reach_the_model_in_model_pixels(seg, monkeypatch):
    vol = _volume()  # frames are 48 rows x 40 columns
    spy = _Spy(monkeypatch, seg.model, "track_step")
    p = SlicePrompt(3, points=[(10, 12), (30, 40)], labels=[1, 0], box=(20, 24, 4, 6))
    res = seg.segment_slices(vol, p)
    kwargs = spy.calls[0][1]
    assert kwargs["frame_idx"] == 3 and kwargs["is_init_cond_frame"]
    coords = kwargs["point_inputs"]["point_coords"][0].cpu().numpy()
    labels = kwargs["point_inputs"]["point_labels"][0].cpu().numpy()
    # box first (labels 2, 3, corners sorted), then the points; x scaled by 64/40, y by 64/48
    expected = np.array([(4, 6), (20, 24), (10, 12), (30, 40)], float) * [64 / 40, 64 / 48]
    np.testing.assert_allclose(coords, expected, rtol=1e-6)
    np.testing.assert_array_equal(labels, [2, 3, 1, 0])
    assert res.mask.shape == vol.shape and res.mask.dtype == bool
    others = np.delete(FrameGeometry.of(vol).to_frames(res.mask), 3, axis=0)
    assert not others.any(), "only the prompted slice is segmented in 2D"


def test_different_prompts_give_different_masks(seg):
    vol = _volume()
    a = seg.segment_slices(vol, SlicePrompt(1, box=(2, 2, 12, 12))).mask
    b = seg.segment_slices(vol, SlicePrompt(1, points=[(35, 40)], labels=[1])).mask
    assert a.any() or b.any()
    assert not np.array_equal(a, b)


def test_bad_prompts_are_refused_with_reasons(seg):
    vol = _volume()
    with pytest.raises(ValueError, match="outside the volume's 6 slices"):
        seg.segment_slices(vol, SlicePrompt(9, box=(1, 1, 5, 5)))
    with pytest.raises(ValueError, match="outside the 40 x 48 frame"):
        seg.segment_slices(vol, SlicePrompt(1, points=[(45, 3)], labels=[1]))
    with pytest.raises(ValueError, match="only negative points"):
        SlicePrompt(1, points=[(4, 3)], labels=[0])
    with pytest.raises(ValueError, match="same length"):
        SlicePrompt(1, points=[(4, 3)], labels=[1, 1])
    with pytest.raises(ValueError, match="same slice"):
        seg.propagate(vol, [SlicePrompt(1, box=(1, 1, 5, 5)), SlicePrompt(1, box=(2, 2, 6, 6))])
    with pytest.raises(UnknownChoiceError, match="direction"):
        seg.propagate(vol, SlicePrompt(1, box=(1, 1, 5, 5)), direction="sideways")


# -- propagation -------------------------------------------------------------------------------------------
def test_propagation_runs_forward_then_backward_from_the_key_slice(seg, monkeypatch):
    vol = _volume()
    spy = _Spy(monkeypatch, seg.model, "track_step")
    steps = []
    res = seg.propagate(vol, SlicePrompt(2, box=(5, 5, 25, 30)), progress=lambda d, t: steps.append((d, t)))
    assert res.slices == [2, 3, 4, 5, 1, 0]
    tracked = [(c[1]["frame_idx"], c[1]["track_in_reverse"]) for c in spy.calls if not c[1]["is_init_cond_frame"]]
    assert tracked == [(3, False), (4, False), (5, False), (1, True), (0, True)]
    assert steps == [(n, 6) for n in range(1, 7)]
    assert res.mask.shape == vol.shape

    fwd = seg.propagate(vol, SlicePrompt(2, box=(5, 5, 25, 30)), direction="forward")
    back = seg.propagate(vol, SlicePrompt(2, box=(5, 5, 25, 30)), direction="backward")
    assert fwd.slices == [2, 3, 4, 5] and back.slices == [2, 1, 0]
    geom = FrameGeometry.of(vol)
    assert not geom.to_frames(fwd.mask)[:2].any() and not geom.to_frames(back.mask)[3:].any()


def test_propagated_mask_matches_the_same_anatomy_in_another_orientation(seg):
    ras = _volume(shape=(40, 48, 6))
    lps = Volume(np.ascontiguousarray(ras.data[::-1, ::-1, :]), ras.affine @ np.array(
        [[-1, 0, 0, 39], [0, -1, 0, 47], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float))
    p = SlicePrompt(3, box=(6, 6, 30, 30))
    a = seg.propagate(ras, p).mask
    b = seg.propagate(lps, p).mask
    np.testing.assert_array_equal(b[::-1, ::-1, :], a)


def test_largest_component_option_leaves_one_component(seg):
    from scipy import ndimage

    vol = _volume(seed=3)
    res = seg.propagate(vol, SlicePrompt(2, box=(0, 0, 39, 47)), largest_component=True)
    if res.mask.any():
        _, n = ndimage.label(res.mask, structure=np.ones((3, 3, 3)))
        assert n == 1


# -- cache -------------------------------------------------------------------------------------------------
def test_second_job_on_the_same_volume_reuses_every_embedding(seg, monkeypatch):
    vol = _volume(seed=5)
    spy = _Spy(monkeypatch, seg.model, "forward_image")
    first = seg.propagate(vol, SlicePrompt(2, box=(5, 5, 25, 30)))
    assert len(spy.calls) == 6 and first.embeddings_computed == 6
    second = seg.propagate(vol, SlicePrompt(2, points=[(10, 10)], labels=[1]))
    again = seg.segment_slices(vol, [SlicePrompt(0, box=(1, 1, 9, 9)), SlicePrompt(5, box=(2, 2, 8, 8))])
    assert len(spy.calls) == 6, "re-prompting the same volume must not run the image encoder"
    assert (second.embeddings_computed, second.embeddings_reused) == (0, 6)
    assert (again.embeddings_computed, again.embeddings_reused) == (0, 2)
    np.testing.assert_array_equal(seg.propagate(vol, SlicePrompt(2, box=(5, 5, 25, 30))).mask, first.mask)

    # another window, another image or another model setting is another key
    seg.segment_slices(vol, SlicePrompt(2, box=(5, 5, 25, 30)), window=(0, 10))
    changed = vol.derive(vol.data * 2)
    seg.segment_slices(changed, SlicePrompt(2, box=(5, 5, 25, 30)))
    assert len(spy.calls) == 8


def test_cache_is_bounded_and_least_recently_used_goes_first():
    cache = EmbeddingCache(max_bytes=3 * 400)
    t = [torch.zeros(100) for _ in range(4)]  # 400 bytes each
    for n in range(3):
        cache.put(("v", n), [t[n]])
    assert cache.get(("v", 0)) is not None  # 0 is now the most recent
    cache.put(("v", 3), [t[3]])
    assert ("v", 1) not in cache and ("v", 0) in cache and len(cache) == 3 and cache.nbytes == 1200
    cache.put(("w", 0), [t[0]])
    assert cache.drop("v") == 2 and len(cache) == 1 and cache.nbytes == 400
    off = EmbeddingCache(0)
    off.put("k", [t[0]])
    assert off.get("k") is None and off.misses == 1


def test_precompute_fills_the_cache_once(seg, monkeypatch):
    vol = _volume(seed=7)
    spy = _Spy(monkeypatch, seg.model, "forward_image")
    assert seg.precompute(vol, [0, 1, 2]) == 3
    assert seg.precompute(vol) == 3  # slices 3, 4, 5
    seg.propagate(vol, SlicePrompt(0, box=(2, 2, 20, 20)))
    assert len(spy.calls) == 6


# -- cancellation ------------------------------------------------------------------------------------------
def test_cancel_stops_propagation_and_the_segmenter_stays_usable(seg):
    vol = _volume(seed=9)
    seen = []
    with pytest.raises(SegmentationCancelled) as info:
        seg.propagate(vol, SlicePrompt(1, box=(3, 3, 20, 20)), progress=lambda d, t: seen.append(d),
                      should_cancel=lambda: len(seen) >= 2)
    assert info.value.done == 2 and info.value.total == 6 and seen == [1, 2]
    with pytest.raises(SegmentationCancelled):
        seg.segment_slices(vol, SlicePrompt(1, box=(3, 3, 20, 20)), should_cancel=lambda: True)
    res = seg.propagate(vol, SlicePrompt(1, box=(3, 3, 20, 20)))
    assert res.slices == [1, 2, 3, 4, 5, 0]


# -- the predictor state -----------------------------------------------------------------------------------
def test_in_memory_state_has_the_fields_of_sam2s_own_init_state(model, seg, tmp_path):
    from PIL import Image

    for n in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * n, np.uint8)).save(tmp_path / f"{n:05d}.jpg")
    real = model.init_state(str(tmp_path))
    vol = _volume(shape=(32, 32, 2))
    ours = seg._new_state(seg._frames(vol, FrameGeometry.of(vol), None), FrameGeometry.of(vol))
    assert set(ours) == set(real)
    for key in real:
        assert type(ours[key]) is type(real[key]) or key in ("images", "cached_features"), key


def test_result_as_volume_keeps_geometry_and_provenance(seg):
    vol = _volume()
    vol.synthetic = True
    res = seg.segment_slices(vol, SlicePrompt(2, box=(3, 3, 20, 20)))
    out = res.to_volume(vol, label=5)
    assert out.same_grid(vol) and out.modality == "segmentation"
    assert set(np.unique(out.data)) <= {0.0, 5.0}
    assert out.provenance["segmentation"]["model"] == "tiny"
    assert out.provenance["segmentation"]["segmented_image_synthetic"] is True


# -- what a job leaves behind ------------------------------------------------------------------------------
def _holds_job_state(seg) -> bool:
    """Whether the segmenter keeps a predictor state or a volume's frames in any of its attributes."""
    from napari_medtrans.segment.segmenter import _Frames

    return any(isinstance(v, _Frames) or (isinstance(v, dict) and "point_inputs_per_obj" in v)
               for v in vars(seg).values())


def test_a_job_frees_its_inference_state_however_it_ends(seg, monkeypatch):
    import gc
    import weakref

    seen = []  # (the state dict the predictor was given, a weak reference to the frames it served)
    orig = seg.model.add_new_points_or_box

    def record(state, *args, **kwargs):
        if not any(s is state for s, _ in seen):
            seen.append((state, weakref.ref(state["images"])))
        return orig(state, *args, **kwargs)

    monkeypatch.setattr(seg.model, "add_new_points_or_box", record)
    vol = _volume(seed=11)

    def check_freed():
        state, frames = seen[-1]
        assert state == {}, "the predictor state is emptied (prompts, outputs, memories, cached features)"
        gc.collect()
        assert frames() is None, "the volume's frames are no longer referenced"
        assert not _holds_job_state(seg)
        assert seg._lock.acquire(blocking=False), "the segmenter is free for the next job"
        seg._lock.release()

    res = seg.segment_slices(vol, [SlicePrompt(1, box=(3, 3, 20, 20)), SlicePrompt(4, points=[(9, 9)], labels=[1])])
    assert res.slices == [1, 4]
    check_freed()
    seg.propagate(vol, SlicePrompt(2, box=(3, 3, 20, 20)))
    check_freed()
    with pytest.raises(SegmentationCancelled):
        seg.propagate(vol, SlicePrompt(2, box=(3, 3, 20, 20)), should_cancel=lambda: len(seen) > 2)
    check_freed()

    def broken_progress(done, total):
        raise RuntimeError("progress display failed")

    with pytest.raises(RuntimeError, match="progress display failed"):
        seg.propagate(vol, SlicePrompt(2, box=(3, 3, 20, 20)), progress=broken_progress)
    check_freed()
    assert len(seen) == 4
    assert len(seg.cache) > 0, "embeddings stay in the CPU cache between jobs"


def test_release_drops_the_cache_and_the_segmenter_works_again(seg, monkeypatch):
    vol = _volume(seed=12)
    seg.propagate(vol, SlicePrompt(2, box=(3, 3, 20, 20)))
    assert len(seg.cache) > 0 and seg.cache.nbytes > 0
    seg.release()
    assert len(seg.cache) == 0 and seg.cache.nbytes == 0
    assert seg.device.type == "cpu" and next(seg.model.parameters()).device.type == "cpu"
    assert not _holds_job_state(seg)
    again = seg.propagate(vol, SlicePrompt(2, box=(3, 3, 20, 20)))
    assert again.embeddings_computed == 6 and again.embeddings_reused == 0, "nothing is served from a released cache"
