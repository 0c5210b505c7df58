"""The Segment widget in a real napari viewer with a tiny random SAM2 (run under xvfb): prompt layers and keys,
prompts on the image's own grid, a Labels result, propagation, cancel, the comparison, SEG export.

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python -m pytest tests/napari/test_napari_segment.py -q
"""

from __future__ import annotations

import threading

import numpy as np
import pydicom
import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from napari_medtrans._napari._layers import index_to_world  # noqa: E402
from napari_medtrans._napari._sample import make_phantom_sample  # noqa: E402
from napari_medtrans._napari._segment import BOXES_LAYER, POINTS_LAYER, SegmentWidget  # noqa: E402
from napari_medtrans.segment import FrameGeometry, Segmenter  # noqa: E402
from napari_medtrans.segment._tiny import tiny_sam2  # noqa: E402
from napari_medtrans.qt import workers  # noqa: E402
from napari_medtrans.qt.segment_panel import SegmenterPool  # noqa: E402

pytestmark = pytest.mark.gui
T1, T2, LABELS = "T1 phantom-1", "T2 phantom-1", "labels phantom-1"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny ops: one thread avoids OpenMP contention on a shared CPU
    yield
    workers.cancel_all(wait_ms=10000)
    torch.set_num_threads(before)


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    for data, kw, kind in make_phantom_sample(seed=1, shape=(32, 32, 8)):
        getattr(viewer, f"add_{kind}")(data, **kw)
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.panel.pool = SegmenterPool(lambda model, device: Segmenter(tiny_sam2(64), name=model))
    w.panel.model_box.setCurrentText("medsam2")  # a tiny random SAM2 stands in for MedSAM2
    w.panel.image_box.setCurrentText(T1)
    return w


def _volume(w, name):
    return w.viewer.layers[name].metadata["volume"]


def _click(w, ijk, negative=False):
    """A point prompt at voxel ``ijk`` of T1, in world coordinates as a click would give it."""
    if negative != (str(w.points.feature_defaults["prompt"].iloc[0]) == "negative"):
        w.toggle_polarity()
    w.points.add(w.points.world_to_data(index_to_world(_volume(w, T1), ijk)))


def _box(w, k, i0, j0, i1, j1):
    vol = _volume(w, T1)
    corners = [w.boxes.world_to_data(index_to_world(vol, (i, j, k))) for i, j in ((i0, j0), (i1, j0), (i1, j1), (i0, j1))]
    w.boxes.add_rectangles(np.array(corners))


def test_prompt_layers_keys_and_prompts_on_the_images_grid(widget):
    w = widget
    assert POINTS_LAYER in w.viewer.layers and BOXES_LAYER in w.viewer.layers
    keys = {str(k) for k in w.points.keymap} | {str(k) for k in w.boxes.keymap}
    assert {"Shift+S", "Shift+P", "Shift+T", "Shift+X"} <= keys
    _click(w, (16, 15, 4))
    _click(w, (10, 20, 4), negative=True)
    _box(w, 4, 12, 11, 20, 19)
    _click(w, (17, 16, 6))
    assert list(w.points.features["prompt"]) == ["positive", "negative", "positive"]
    geom = FrameGeometry.of(_volume(w, T1))
    p4, p6 = w.prompts_for(_volume(w, T1))
    s, x, y = geom.index_to_frame((16, 15, 4))
    assert p4.slice == s == 4 and p4.points[0] == pytest.approx((x, y)) and p4.labels == (1, 0)
    corners = [geom.index_to_frame((i, j, 4))[1:] for i, j in ((12, 11), (20, 19))]
    assert p4.box == pytest.approx((min(c[0] for c in corners), min(c[1] for c in corners),
                                    max(c[0] for c in corners), max(c[1] for c in corners)))
    assert p6.slice == 6 and p6.box is None and p6.labels == (1,)
    w.clear_prompts()
    assert w.prompts_for(_volume(w, T1)) == []


def _press(w, qtbot, key):
    """Shift+``key`` typed on the canvas, as a person would: the Qt event goes through vispy to napari's keymap
    handler, which calls the binding of the selected layer."""
    from qtpy.QtCore import Qt

    qtbot.keyClick(w.viewer.window._qt_viewer.canvas.native, getattr(Qt.Key, f"Key_{key}"),
                   Qt.KeyboardModifier.ShiftModifier)


def test_prompt_shortcuts_pressed_on_the_canvas(widget, qtbot):
    w = widget
    w.viewer.layers.selection.active = w.points
    assert str(w.points.feature_defaults["prompt"].iloc[0]) == "positive"
    _press(w, qtbot, "T")  # Shift+T: the next points are negative
    assert str(w.points.feature_defaults["prompt"].iloc[0]) == "negative"
    assert w.panel.status.text() == "next points: negative"
    w.points.add(w.points.world_to_data(index_to_world(_volume(w, T1), (4, 4, 4))))
    _press(w, qtbot, "T")  # and back to positive
    assert w.panel.status.text() == "next points: positive"
    w.points.add(w.points.world_to_data(index_to_world(_volume(w, T1), (16, 15, 4))))
    assert list(w.points.features["prompt"]) == ["negative", "positive"]

    with qtbot.waitSignal(w.panel.segmented, timeout=60000) as got:
        _press(w, qtbot, "S")  # Shift+S: segment the prompted slice
        assert w.panel.cancel_button.isEnabled(), "the job runs in a worker; the key returns at once"
    request, result = got.args
    assert request.mode == "slices" and request.image == T1 and result.slices == [4]
    assert request.prompts[0].labels == (0, 1)
    assert f"segmentation of {T1}" in w.viewer.layers

    _box(w, 4, 10, 10, 22, 22)
    w.viewer.layers.selection.active = w.boxes  # the keys work with either prompt layer selected
    with qtbot.waitSignal(w.panel.segmented, timeout=60000) as got:
        _press(w, qtbot, "P")  # Shift+P: propagate through the volume
    request, result = got.args
    assert request.mode == "propagate" and sorted(result.slices) == list(range(8))
    assert request.prompts[0].box is not None

    _press(w, qtbot, "X")  # Shift+X: clear every prompt
    assert len(w.points.data) == 0 and len(w.boxes.data) == 0
    assert w.prompts_for(_volume(w, T1)) == []
    w.viewer.layers.selection.active = w.viewer.layers[T1]  # another layer selected: the keys are not ours
    _click(w, (16, 15, 4))
    _press(w, qtbot, "X")
    assert len(w.points.data) == 1


def test_segment_slice_then_propagate_make_a_labels_layer(widget, qtbot):
    # (the progress bar is checked here too: every napari viewer a test opens costs the PySide6 binding
    # thousands of references to None, so this file keeps its viewer count down)
    w = widget
    bar = w.panel.progress
    seen = []  # (value, maximum) each time the bar moves
    bar.valueChanged.connect(lambda v: seen.append((v, bar.maximum())))
    _box(w, 4, 10, 10, 22, 22)
    with qtbot.waitSignal(w.panel.segmented, timeout=60000) as got:
        assert w.panel.segment("slices") is not None
    assert seen[0][0] == 0 and seen[-1] == (1, 1) and bar.value() == bar.maximum() == 1  # from 0 to full
    request, result = got.args
    assert request.mode == "slices" and result.slices == [4]
    layer = w.viewer.layers[f"segmentation of {T1}"]
    t1 = w.viewer.layers[T1]
    assert type(layer).__name__ == "Labels" and layer.data.shape == t1.data.shape
    np.testing.assert_allclose(layer.affine.affine_matrix, t1.affine.affine_matrix)
    np.testing.assert_array_equal(layer.metadata["volume"].data > 0, result.mask)

    seen.clear()
    with qtbot.waitSignal(w.panel.segmented, timeout=60000) as got:
        w.panel.segment("propagate")
    _, prop = got.args
    assert prop.slices == [4, 5, 6, 7, 3, 2, 1, 0]
    # the bar starts from zero and advances one step per propagated slice up to its maximum
    assert seen == [(0, 1)] + [(n, 8) for n in range(1, 9)], seen
    assert bar.value() == bar.maximum() == 8
    assert prop.embeddings_reused > 0, "the slice embedded by the 2D run is reused"
    np.testing.assert_array_equal(w.viewer.layers[f"segmentation of {T1}"].metadata["volume"].data > 0, prop.mask)
    assert "from the cache" in w.panel.status.text()


def test_cancel_and_missing_prompts(widget, qtbot, monkeypatch):
    w = widget
    reported = []
    monkeypatch.setattr(workers, "_handler", lambda message, exc: reported.append(message))
    assert w.panel.segment("propagate") is None
    assert reported and "add a prompt first" in reported[-1]

    gate = threading.Event()

    def slow_factory(model, device):
        gate.wait(10)
        return Segmenter(tiny_sam2(64), name=model)

    w.panel.pool = SegmenterPool(slow_factory)
    _click(w, (16, 16, 3))
    with qtbot.waitSignal(w.panel.stopped, timeout=60000) as got:
        job = w.panel.segment("propagate")
        w.panel.cancel()
        gate.set()
    assert got.args[1] == "cancelled" and job.error is None
    assert f"segmentation of {T1}" not in w.viewer.layers
    qtbot.waitUntil(lambda: w.panel.propagate_button.isEnabled(), timeout=10000)


def test_compare_real_and_synthetic_against_the_labels(widget, qtbot):
    w = widget
    p = w.panel
    p.compare["source"].setCurrentText(T1)
    p.compare["real"].setCurrentText(T2)
    p.compare["truth"].setCurrentText(LABELS)
    p.labels_edit.setText("4 5 6")
    with qtbot.waitSignal(p.evaluated, timeout=120000) as got:
        assert p.evaluate() is not None
    request, report = got.args
    assert request.labels == [4, 5, 6] and [s.image for s in report.images] == [f"{T1} (source)", f"{T2} (real)"]
    text = p.table.toPlainText()
    assert "mIoU (per slice)" in text and f"{report.images[0].mean_slice_iou:.4f}" in text
    for name in (f"{T1} (source)", f"{T2} (real)"):
        assert f"medsam2 mask of {name}" in w.viewer.layers


def test_compare_uses_the_drawn_prompts_for_every_image(widget, qtbot):
    w = widget
    p = w.panel
    p.compare["source"].setCurrentText(T1)
    p.compare["real"].setCurrentText(T2)
    p.compare["truth"].setCurrentText(LABELS)
    p.labels_edit.setText("4 5 6")
    _click(w, (16, 15, 4))
    _click(w, (4, 4, 4), negative=True)
    _box(w, 4, 10, 10, 22, 22)
    _click(w, (17, 16, 5))
    drawn = w.prompts_for(_volume(w, LABELS))
    assert [q.slice for q in drawn] == [4, 5] and drawn[0].labels == (1, 0) and drawn[0].box is not None
    with qtbot.waitSignal(p.evaluated, timeout=120000) as got:
        assert p.evaluate() is not None
        assert "your prompts on 2 slice(s)" in p.status.text()
    request, report = got.args
    assert request.prompts == drawn and request.prompt_source == "user" and report.prompt_source == "user"
    fresh = Segmenter(tiny_sam2(64))
    for name, volume in request.images.items():
        result = report.results[name]
        assert result.prompts == drawn and result.slices == [4, 5]
        # the drawn prompts, not ground-truth boxes, made the mask: the same as segmenting with them directly
        np.testing.assert_array_equal(result.mask, fresh.segment_slices(volume, drawn).mask)
        assert f"medsam2 mask of {name}" in w.viewer.layers
    assert "prompts from the user" in p.table.toPlainText()
    assert "your prompts on 2 slice(s)" in p.status.text()

    w.clear_prompts()  # nothing drawn: back to boxes from the ground truth
    with qtbot.waitSignal(p.evaluated, timeout=120000) as got:
        p.evaluate()
    request, report = got.args
    assert request.prompts is None and report.prompt_source == "ground truth"
    assert all(q.box is not None and not q.points for q in report.prompts)
    assert "prompts from the ground truth" in p.table.toPlainText()
    assert "prompts from the ground truth" in p.status.text()


def test_seg_export_of_a_phantom_image_writes_its_series_and_the_seg(widget, qtbot, tmp_path):
    w = widget
    _box(w, 4, 8, 8, 24, 24)
    with qtbot.waitSignal(w.panel.segmented, timeout=60000) as got:
        w.panel.segment("propagate")
    if not got.args[1].mask.any():
        pytest.skip("the random tiny model produced an empty mask")
    assert w.panel.export_button.isEnabled()
    job = w.panel.export(T1, str(tmp_path / "out"))
    with qtbot.waitSignal(job.finished, timeout=60000):
        pass
    assert job.error is None and (tmp_path / "out" / "seg.dcm").is_file()
    ds = pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    assert ds.Modality == "SEG" and ds.SegmentSequence[0].SegmentAlgorithmName == "medsam2"
    assert f"wrote {tmp_path / 'out' / 'seg.dcm'}" in w.panel.status.text()


def test_seg_export_of_a_labels_layer_with_tumour_parts_gives_one_segment_each(widget, qtbot, tmp_path):
    from napari_medtrans._napari._common import get_volume
    from napari_medtrans.core.io import load
    from napari_medtrans.core.io.dicom_seg import read_dicom_seg

    w = widget
    layer = w.viewer.layers[LABELS]
    data = np.asarray(layer.data)
    layer.data = np.where(np.isin(data, (4, 5, 6)), data, 0)  # as if the other labels had been erased
    tumour = get_volume(w.viewer, LABELS)
    assert {4, 5, 6} <= set(np.unique(tumour.data).astype(int))
    job = w.panel.export(T1, str(tmp_path / "out"), mask=tumour)
    with qtbot.waitSignal(job.finished, timeout=60000):
        pass
    assert job.error is None
    ds = pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["edema", "enhancing rim", "necrosis"]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for s in ds.SegmentSequence] == [
        "Edema", "Neoplasm", "Necrosis"]
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"MANUAL"}
    written = load(tmp_path / "out" / "image")  # T1's own series, written for the SEG to reference
    back = read_dicom_seg(tmp_path / "out" / "seg.dcm", written, values={1: 4, 2: 5, 3: 6})
    # the same label map: each voxel of the written grid holds the label of the same place in the layer
    onto = np.linalg.inv(tumour.affine) @ written.affine
    ijk = np.rint(np.einsum("ab,bijk->aijk", onto[:3, :3], np.indices(written.shape))
                  + onto[:3, 3, None, None, None]).astype(int)
    np.testing.assert_array_equal(back.data, tumour.data[tuple(ijk)])


def test_export_button_sends_the_hand_edited_segmentation(widget, qtbot, tmp_path, monkeypatch):
    from napari_medtrans.qt import segment_panel

    w = widget
    _box(w, 4, 10, 10, 22, 22)
    with qtbot.waitSignal(w.panel.segmented, timeout=60000):
        w.panel.segment("slices")
    assert w.edited_mask(T1) is None, "an untouched result is exported as the model's"
    layer = w.viewer.layers[f"segmentation of {T1}"]
    edited = np.zeros_like(np.asarray(layer.data))
    edited[3:6, 5:15, 6:12] = 1  # the user paints a block of their own (layer axes: display order)
    layer.data = edited
    manual = w.edited_mask(T1)
    assert manual is not None and int((manual.data > 0).sum()) == int(edited.sum())
    monkeypatch.setattr(segment_panel.QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "out"))
    jobs = []
    real_export = w.panel.export
    monkeypatch.setattr(w.panel, "export", lambda *a, **k: jobs.append(real_export(*a, **k)) or jobs[-1])
    w.panel._pick_export()
    with qtbot.waitSignal(jobs[0].finished, timeout=60000):
        pass
    assert jobs[0].error is None
    ds = pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"MANUAL"}
    assert int(np.asarray(ds.pixel_array).astype(bool).sum()) == int(edited.sum())


def test_error_maps_on_top_are_not_offered_for_segmentation(widget):
    """Issue 21 item 5: after Inspect an error map sits on top of the layer list; Segment must not default to it
    (nor offer it): maps and previews are not images to segment."""
    vol = _volume(widget, T1)
    widget.viewer.add_image(np.asarray(vol.data), name="abs error of x", metadata={"map": "abs error"},
                            affine=widget.viewer.layers[T1].affine)
    box = widget.panel.image_box
    offered = [box.itemText(i) for i in range(box.count())]
    assert "abs error of x" not in offered and T1 in offered and T2 in offered


def test_a_new_user_segments_the_tumour_with_no_weights_imported(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """The plugin without SAM2/MedSAM2 weights: the shipped segmenter is the default and a box finds the tumour."""
    from napari_medtrans.core.metrics import dice
    from napari_medtrans.segment import SHIPPED

    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    viewer = make_napari_viewer()
    for data, kw, kind in make_phantom_sample(seed=7):  # the benchmark's grid
        getattr(viewer, f"add_{kind}")(data, **kw)
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert w.panel.model_box.currentText() == SHIPPED
    assert "No SAM2/MedSAM2 weights imported" in w.panel.status.text()
    flair, labels = "FLAIR phantom-7", "labels phantom-7"
    truth = np.isin(np.rint(viewer.layers[labels].metadata["volume"].data), [4, 5, 6])
    vol = viewer.layers[flair].metadata["volume"]
    k = int(np.argmax(truth.sum(axis=(0, 1))))  # the axial slice with the most tumour
    ii, jj = np.nonzero(truth[:, :, k])
    corners = [w.boxes.world_to_data(index_to_world(vol, (i, j, k))) for i, j in
               ((ii.min(), jj.min()), (ii.max(), jj.min()), (ii.max(), jj.max()), (ii.min(), jj.max()))]
    w.boxes.add_rectangles(np.array(corners))
    w.panel.image_box.setCurrentText(flair)
    with qtbot.waitSignal(w.panel.segmented, timeout=120000) as got:
        assert w.panel.segment("slices") is not None
    _, result = got.args
    assert result.model == SHIPPED
    assert dice(result.mask[:, :, k], truth[:, :, k]) >= 0.7  # the key slice; the card gives the 3-D means
    assert f"segmentation of {flair}" in viewer.layers


def test_opening_segment_keeps_the_slice_slider_on_the_images_slices(make_napari_viewer):
    """Issue 21 item 5: the empty prompt layers once made napari's slider step 1 mm ("-3 ... 78 | 158")."""
    viewer = make_napari_viewer()
    for data, kw, kind in make_phantom_sample(seed=1, shape=(32, 36, 20)):
        getattr(viewer, f"add_{kind}")(data, **kw)
    before = [tuple(r) for r in viewer.dims.range]
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert [tuple(r) for r in viewer.dims.range] == before
    assert viewer.dims.nsteps[0] == 20
