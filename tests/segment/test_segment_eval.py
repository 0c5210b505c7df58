"""The Table III protocol: prompts from the ground truth or the user's, Dice / IoU against hand-computed values,
agreement between images, and runs with the tiny SAM2 on a phantom with a tumour."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_medtrans.core.errors import GeometryMismatchError, InvalidVolumeError
from napari_medtrans.segment import FrameGeometry, SlicePrompt, Window, box_of_mask, key_slice, prompts_from_mask
from napari_medtrans.segment.evaluate import (
    evaluate_segmentation,
    format_report,
    ground_truth_mask,
    slice_scores,
    write_reports_csv,
)
from napari_medtrans.segment.prompts import PromptError, largest_component
from napari_medtrans.segment.segmenter import SegmentationResult
from napari_medtrans.core.volume import Volume

AFFINE = np.diag([1.0, 1.0, 3.0, 1.0])


# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _truth() -> tuple[Volume, FrameGeometry]:
    """Ground truth drawn in frames (3 slices of 6 rows x 5 columns), label 5 inside, label 2 elsewhere."""
    probe = Volume(np.zeros((5, 6, 3), np.float32), AFFINE)
    geom = FrameGeometry.of(probe)
    frames = np.full(geom.shape, 2.0, np.float32)
    frames[1, 1, 1] = frames[1, 1, 2] = frames[1, 2, 1] = 5  # an L of 3 pixels in a 2 x 2 box
    frames[2, 3:5, 1:4] = 5  # a full 2 x 3 rectangle
    return Volume(geom.to_volume(frames), AFFINE, modality="labels"), geom


class _BoxFiller:
    """A stand-in model: fills the prompt box (T2) or only its top row (T1)."""

    name = "box-filler"

    def segment_slices(self, volume, prompts, **kw):
        geom = FrameGeometry.of(volume)
        out = np.zeros(geom.shape, bool)
        for p in prompts:
            x0, y0, x1, y1 = (int(v) for v in p.box)
            rows = slice(y0, y1 + 1) if volume.modality == "T2" else slice(y0, y0 + 1)
            out[p.slice, rows, x0:x1 + 1] = True
        return SegmentationResult(geom.to_volume(out), [p.slice for p in prompts], list(prompts), self.name,
                                  Window(0, 1), 0.0, 0, 0)


def test_ground_truth_prompts_boxes_and_key_slice():
    truth, geom = _truth()
    m = geom.to_frames(ground_truth_mask(truth, [5]))
    assert box_of_mask(m[1]) == (1.0, 1.0, 2.0, 2.0)
    assert box_of_mask(m[2], margin=2) == (0.0, 1.0, 4.0, 5.0)
    assert box_of_mask(m[0]) is None
    assert key_slice(m) == 2
    assert prompts_from_mask(m) == [SlicePrompt(1, box=(1, 1, 2, 2)), SlicePrompt(2, box=(1, 3, 3, 4))]
    assert prompts_from_mask(m, mode="key") == [SlicePrompt(2, box=(1, 3, 3, 4))]
    assert ground_truth_mask(truth).sum() == truth.data.size  # every voxel is labelled (2 or 5)


def test_slice_scores_by_hand():
    truth = np.zeros((3, 4, 4), bool)
    truth[0, :2, :2] = True  # 4 pixels
    truth[2, 0, :] = True  # 4 pixels
    pred = np.zeros_like(truth)
    pred[0, :2, :1] = True  # 2 pixels inside: Dice 4/6, IoU 2/4
    pred[1, 3, 3] = True  # slice without truth: not averaged
    pred[2, 0, :] = True  # exact
    d, j, n = slice_scores(pred, truth)
    assert n == 2 and d == pytest.approx((4 / 6 + 1) / 2) and j == pytest.approx((0.5 + 1) / 2)
    assert np.isnan(slice_scores(pred, np.zeros_like(truth))[0])


def test_table_iii_protocol_scores_by_hand(tmp_path):
    truth, _ = _truth()
    zeros = np.zeros(truth.shape, np.float32)
    images = {"T1 (source)": Volume(zeros, AFFINE, modality="T1"), "T2 (real)": Volume(zeros, AFFINE, modality="T2")}
    report = evaluate_segmentation(images, truth, _BoxFiller(), labels=[5])
    t1, t2 = report.images
    # T2: the box is filled. Slice 1: 4 predicted, 3 true; slice 2 exact. 3D: 10 predicted, 9 true.
    assert (t2.dice, t2.iou) == (pytest.approx(18 / 19), pytest.approx(9 / 10))
    assert (t2.mean_slice_dice, t2.mean_slice_iou, t2.n_slices) == (pytest.approx(13 / 14), pytest.approx(7 / 8), 2)
    # T1: the box's top row only. Slice 1: 2 of 3 (Dice 4/5, IoU 2/3); slice 2: 3 of 6 (Dice 2/3, IoU 1/2).
    assert (t1.dice, t1.iou) == (pytest.approx(5 / 7), pytest.approx(5 / 9))
    assert (t1.mean_slice_dice, t1.mean_slice_iou) == (pytest.approx(11 / 15), pytest.approx(7 / 12))
    (pair,) = report.pairs
    assert (pair.a, pair.b) == ("T1 (source)", "T2 (real)")
    assert (pair.dice, pair.iou) == (pytest.approx(2 / 3), pytest.approx(0.5))

    table = format_report([report])
    assert "T2 (real)" in table and f"{13 / 14:.4f}" in table and f"{7 / 12:.4f}" in table and "box-filler" in table
    path = write_reports_csv([report], tmp_path / "seg.csv")
    rows = list(csv.DictReader(open(path)))
    assert [(r["image"], r["reference"]) for r in rows] == [
        ("T1 (source)", "ground truth"), ("T2 (real)", "ground truth"), ("T1 (source)", "T2 (real)")]
    assert float(rows[1]["mean_slice_iou"]) == pytest.approx(7 / 8) and rows[0]["labels"] == "5"
    assert report.prompt_source == "ground truth" and {r["prompts"] for r in rows} == {"ground truth"}
    assert "prompts from the ground truth" in table


def test_user_prompts_replace_the_ground_truth_boxes_scores_by_hand(tmp_path):
    truth, _ = _truth()
    zeros = np.zeros(truth.shape, np.float32)
    images = {"T1 (source)": Volume(zeros, AFFINE, modality="T1"), "T2 (real)": Volume(zeros, AFFINE, modality="T2")}
    # a box wider than the object on slice 2 (rows 3-4, all 5 columns) and no prompt on slice 1
    user = [SlicePrompt(2, box=(0, 3, 4, 4))]
    report = evaluate_segmentation(images, truth, _BoxFiller(), labels=[5], prompts=user, margin=3)
    assert report.prompt_source == "user" and report.prompts == user
    assert all(res.prompts == user for res in report.results.values()), "every image gets the user's prompts"
    t1, t2 = report.images
    # T2: 10 pixels on slice 2, 6 of them in the 9-pixel truth; slice 1 (3 true pixels) unprompted: Dice 0
    assert (t2.dice, t2.iou) == (pytest.approx(12 / 19), pytest.approx(6 / 13))
    assert (t2.mean_slice_dice, t2.mean_slice_iou, t2.n_slices) == (pytest.approx(0.375), pytest.approx(0.3), 2)
    # T1: row 3 only, 5 pixels, 3 of them true
    assert (t1.dice, t1.iou) == (pytest.approx(3 / 7), pytest.approx(3 / 11))
    assert (t1.mean_slice_dice, t1.mean_slice_iou) == (pytest.approx(3 / 11), pytest.approx(3 / 16))
    (pair,) = report.pairs
    assert (pair.dice, pair.iou) == (pytest.approx(2 / 3), pytest.approx(0.5))
    rows = list(csv.DictReader(open(write_reports_csv([report], tmp_path / "user.csv"))))
    assert {r["prompts"] for r in rows} == {"user"} and len(rows) == 3
    assert "prompts from the user" in format_report([report])


def test_user_prompts_that_do_not_fit_are_refused_before_any_segmentation():
    truth, _ = _truth()  # frames: 3 slices of 6 rows x 5 columns
    calls = []

    class Recorder(_BoxFiller):
        def segment_slices(self, volume, prompts, **kw):
            calls.append(prompts)
            return super().segment_slices(volume, prompts, **kw)

    images = {"x": Volume(np.zeros(truth.shape, np.float32), AFFINE, modality="T2")}
    with pytest.raises(PromptError, match="outside the volume's 3 slices"):
        evaluate_segmentation(images, truth, Recorder(), labels=[5], prompts=[SlicePrompt(3, box=(0, 0, 1, 1))])
    with pytest.raises(PromptError, match=r"outside the 5 x 6 frame"):
        evaluate_segmentation(images, truth, Recorder(), labels=[5], prompts=[SlicePrompt(1, points=[(7, 2)],
                                                                                          labels=[1])])
    with pytest.raises(PromptError, match="no prompt given"):
        evaluate_segmentation(images, truth, Recorder(), labels=[5], prompts=[])
    with pytest.raises(PromptError, match="same slice"):
        evaluate_segmentation(images, truth, Recorder(), labels=[5],
                              prompts=[SlicePrompt(1, box=(0, 0, 1, 1)), SlicePrompt(1, box=(1, 1, 2, 2))])
    assert calls == []


def test_protocol_refuses_mismatched_grids_and_missing_labels():
    truth, _ = _truth()
    other = Volume(np.zeros((5, 6, 4), np.float32), AFFINE)
    with pytest.raises(GeometryMismatchError, match="not on the ground truth's grid"):
        evaluate_segmentation({"x": other}, truth, _BoxFiller(), labels=[5])
    same = Volume(np.zeros(truth.shape, np.float32), AFFINE)
    with pytest.raises(InvalidVolumeError, match=r"no voxel with labels \[7\]"):
        evaluate_segmentation({"x": same}, truth, _BoxFiller(), labels=[7])


def test_largest_component_by_hand():
    m = np.zeros((6, 6), bool)
    m[0, 0] = True
    m[2:5, 2:4] = True
    m[5, 5] = True  # not a neighbour of the block (its nearest pixel is (4, 3))
    out = largest_component(m)
    assert out.sum() == 6 and out[2:5, 2:4].all()
    m3 = np.zeros((3, 3, 3), bool)
    m3[0, 0, 0] = m3[1, 1, 1] = True  # diagonal neighbours: one component with 26-connectivity
    assert largest_component(m3).sum() == 2


def test_tiny_sam2_on_a_phantom_tumour_in_both_modes():
    pytest.importorskip("sam2")
    from napari_medtrans.phantom import make_subject
    from napari_medtrans.segment import Segmenter
    from napari_medtrans.segment._tiny import tiny_sam2

    subject = make_subject(1, shape=(32, 32, 6), tumour=True, contrasts=("T1", "T2"), anatomy="procedural")
    seg = Segmenter(tiny_sam2(64))
    images = {"T1": subject.images["T1"], "T2": subject.images["T2"]}
    steps = []
    report = evaluate_segmentation(images, subject.labels, seg, labels=[4, 5, 6],
                                   progress=lambda d, t: steps.append((d, t)))
    n = report.images[0].n_slices
    assert n == 5 and steps[-1] == (2 * n, 2 * n)
    for s in report.images:
        assert 0 <= s.dice <= 1 and 0 <= s.mean_slice_iou <= 1
    truth_frames = FrameGeometry.of(subject.labels).to_frames(ground_truth_mask(subject.labels, [4, 5, 6]))
    for res in report.results.values():
        pred = FrameGeometry.of(subject.labels).to_frames(res.mask)
        assert not pred[~truth_frames.any(axis=(1, 2))].any(), "slices without a prompt stay empty"
    computed = seg.embeddings_computed
    prop = evaluate_segmentation(images, subject.labels, seg, labels=[4, 5, 6], mode="propagate")
    assert prop.mode == "propagate" and sorted(prop.results["T1"].slices) == list(range(6))
    assert seg.embeddings_computed == computed + 2 * (6 - 5), "embeddings of the prompted slices were reused"


class _PromptSpy:
    """Record what the SAM2 predictor is given (frame, points, labels, box) on every prompt, passing it on."""

    def __init__(self, monkeypatch, model):
        self.calls = []
        orig = model.add_new_points_or_box

        def wrapper(state, frame_idx, obj_id, points=None, labels=None, box=None, **kw):
            self.calls.append((frame_idx, None if points is None else np.asarray(points).tolist(),
                               None if labels is None else np.asarray(labels).tolist(),
                               None if box is None else np.asarray(box).tolist()))
            return orig(state, frame_idx=frame_idx, obj_id=obj_id, points=points, labels=labels, box=box, **kw)

        monkeypatch.setattr(model, "add_new_points_or_box", wrapper)


def _three_images():
    """Source, real target and a "synthetic" target that is an exact copy of the real one."""
    from napari_medtrans.phantom import make_subject

    subject = make_subject(1, shape=(32, 32, 6), tumour=True, contrasts=("T1", "T2"), anatomy="procedural")
    real = subject.images["T2"]
    synthetic = real.derive(real.data.copy(), synthetic=True)
    return {"T1 (source)": subject.images["T1"], "T2 (real)": real, "T2 (synthetic)": synthetic}, subject.labels


def test_tiny_sam2_user_prompts_reach_the_model_for_every_image(monkeypatch):
    pytest.importorskip("sam2")
    from napari_medtrans.segment import Segmenter
    from napari_medtrans.segment._tiny import tiny_sam2

    images, labels = _three_images()
    seg = Segmenter(tiny_sam2(64))
    user = [SlicePrompt(2, points=[(20, 8), (3, 3)], labels=[1, 0], box=(14, 4, 28, 16)),
            SlicePrompt(4, points=[(15, 15)], labels=[1])]
    spy = _PromptSpy(monkeypatch, seg.model)
    report = evaluate_segmentation(images, labels, seg, labels=[4, 5, 6], prompts=user)
    expected = [(2, [[20.0, 8.0], [3.0, 3.0]], [1, 0], [14.0, 4.0, 28.0, 16.0]), (4, [[15.0, 15.0]], [1], None)]
    assert spy.calls == expected * 3, "the user's prompts, as given, for the source, the real and the synthetic image"
    assert report.prompt_source == "user"
    for name, vol in images.items():
        res = report.results[name]
        assert res.prompts == user and res.slices == [2, 4]
        # the same prompts on the same image give the same mask as segmenting it directly
        np.testing.assert_array_equal(res.mask, Segmenter(tiny_sam2(64)).segment_slices(vol, user).mask)
    real, synthetic = report.results["T2 (real)"].mask, report.results["T2 (synthetic)"].mask
    assert real.any(), "the tiny model gives a mask for these prompts"
    np.testing.assert_array_equal(real, synthetic)  # identical images, identical prompts
    pair = next(p for p in report.pairs if (p.a, p.b) == ("T2 (real)", "T2 (synthetic)"))
    assert (pair.dice, pair.iou) == (1.0, 1.0)

    spy.calls.clear()
    from_truth = evaluate_segmentation(images, labels, seg, labels=[4, 5, 6])
    assert from_truth.prompt_source == "ground truth" and len(spy.calls) == 3 * 5
    assert all(c[1] is None and c[3] is not None for c in spy.calls), "ground-truth prompts are boxes only"
    for name in images:
        assert not np.array_equal(report.results[name].mask, from_truth.results[name].mask)


def test_tiny_sam2_user_prompts_are_propagated_from_the_first_prompted_slice(monkeypatch):
    pytest.importorskip("sam2")
    from napari_medtrans.segment import Segmenter
    from napari_medtrans.segment._tiny import tiny_sam2

    images, labels = _three_images()
    seg = Segmenter(tiny_sam2(64))
    user = [SlicePrompt(3, points=[(16, 16)], labels=[1], box=(8, 4, 24, 29))]  # the ground truth's key slice is 2
    spy = _PromptSpy(monkeypatch, seg.model)
    steps = []
    report = evaluate_segmentation(images, labels, seg, labels=[4, 5, 6], mode="propagate", prompts=user,
                                   progress=lambda d, t: steps.append((d, t)))
    assert spy.calls == [(3, [[16.0, 16.0]], [1], [8.0, 4.0, 24.0, 29.0])] * 2 * 3  # forward and backward passes
    assert steps[-1] == (3 * 6, 3 * 6)
    for res in report.results.values():
        assert res.slices == [3, 4, 5, 2, 1, 0] and res.prompts == user
    np.testing.assert_array_equal(report.results["T2 (real)"].mask, report.results["T2 (synthetic)"].mask)
    assert report.mode == "propagate" and report.prompt_source == "user"
