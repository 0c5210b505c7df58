"""The app's Segment dock with a tiny random SAM2: clicks on an axial pane become prompts on the image's grid,
the mask shows as an overlay. Runs with QT_QPA_PLATFORM=offscreen as well as under xvfb."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from medtrans_app.imaging import DisplayVolume  # noqa: E402
from medtrans_app.main_window import MainWindow  # noqa: E402
from medtrans_app.settings import AppSettings  # noqa: E402
from napari_medtrans.phantom import make_subject  # noqa: E402
from napari_medtrans.segment import FrameGeometry, Segmenter  # noqa: E402
from napari_medtrans.segment._tiny import tiny_sam2  # noqa: E402
from napari_medtrans.core.volume import Volume  # noqa: E402
from napari_medtrans.qt import workers  # noqa: E402
from napari_medtrans.qt.segment_panel import SegmenterPool  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path):
    before = torch.get_num_threads()
    w = MainWindow(AppSettings(tmp_path / "settings.ini"))
    torch.set_num_threads(1)  # after the window sets its own: the tiny model's many small ops prefer one thread
    qtbot.addWidget(w)
    w.resize(1200, 700)
    w.show()
    w.errors = []
    workers.set_error_handler(lambda message, exc=None: w.errors.append(message))
    s = make_subject(2, shape=(32, 32, 8), tumour=True, contrasts=("T1", "T2"))
    w.add_volumes([("T1 test", s.images["T1"]), ("T2 test", s.images["T2"])])
    w.subject = s
    w.segmentation.panel.pool = SegmenterPool(lambda model, device: Segmenter(tiny_sam2(64), name=model))
    w.segmentation.panel.model_box.setCurrentText("medsam2")  # a tiny random SAM2 stands in for MedSAM2
    yield w
    workers.cancel_all()
    workers.set_error_handler(None)
    torch.set_num_threads(before)


def _pixel_pos(pane, col, row) -> QPoint:
    _, _, sx, sy, ox, oy = pane._layout()
    return QPoint(int(round(ox + (col + 0.5) * sx)), int(round(oy + (row + 0.5) * sy)))


def test_app_axial_slices_are_the_models_frames():
    rot = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, -1]], float)  # permuted and flipped axes
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.0, 1.5, 2.0])
    vol = Volume(np.random.default_rng(0).random((6, 7, 5)).astype(np.float32), affine)
    frames = FrameGeometry.of(vol).to_frames(vol.data)
    shown = DisplayVolume.from_volume(vol)
    for s in range(frames.shape[0]):
        np.testing.assert_array_equal(shown.slice("axial", s), frames[s])


def test_clicks_become_prompts_and_the_mask_an_overlay(window, qtbot):
    seg = window.segmentation
    assert seg.dock.windowTitle() == "Segment"
    assert seg.panel.image_box.findText("T1 test") >= 0 and seg.panel.compare["truth"].findText("T2 test") >= 0
    window.pane_boxes[0].setCurrentText("T1 test")
    pane = window.viewer.panes[0]
    window.viewer.state.set_index(3)
    seg.click_box.setChecked(True)
    qtbot.mouseClick(pane, Qt.MouseButton.LeftButton, pos=_pixel_pos(pane, 14, 12))
    seg.mode_box.setCurrentIndex(1)
    qtbot.mouseClick(pane, Qt.MouseButton.LeftButton, pos=_pixel_pos(pane, 5, 6))
    seg.mode_box.setCurrentIndex(2)
    qtbot.mouseClick(pane, Qt.MouseButton.LeftButton, pos=_pixel_pos(pane, 8, 9))
    qtbot.mouseClick(pane, Qt.MouseButton.LeftButton, pos=_pixel_pos(pane, 20, 22))
    assert seg.prompt_label.text() == "2 point(s), 1 box(es)"

    (prompt,) = seg.prompts_for(window.volumes["T1 test"])
    assert prompt.slice == 3 and prompt.labels == (1, 0)
    np.testing.assert_allclose(prompt.points, [(14, 12), (5, 6)], atol=0.6)
    np.testing.assert_allclose(prompt.box, (8, 9, 20, 22), atol=0.6)

    seg.panel.image_box.setCurrentText("T1 test")
    with qtbot.waitSignal(seg.panel.segmented, timeout=60000) as got:
        assert seg.panel.segment("propagate") is not None
    _, result = got.args
    assert sorted(result.slices) == list(range(8))
    assert pane.overlay is not None and window.viewer.panes[1].overlay is None
    np.testing.assert_array_equal(seg.masks["T1 test"].data > 0, result.mask)
    assert window.errors == []


def test_clicks_off_axial_panes_are_not_prompts(window):
    seg = window.segmentation
    seg.click_box.setChecked(True)
    assert not seg.click(1, 10, 10)  # the pane shows nothing
    window.pane_boxes[0].setCurrentText("T1 test")
    window.viewer.set_plane("coronal")
    assert not seg.click(0, 100, 100) and "axial" in seg.prompt_label.text()
    seg.clear_prompts()
    assert seg.prompts_for(window.volumes["T1 test"]) == []


def _compare(qtbot, panel, **roles):
    for role, name in roles.items():
        panel.compare[role].setCurrentText(name)
    with qtbot.waitSignal(panel.evaluated, timeout=120000) as got:
        assert panel.evaluate() is not None
    return got.args


def _shipped_segmenter_named(model, device):
    """The shipped promptunet-phantom under the panel's model name: a trained segmenter, so the tumour's masks are
    not empty (the tiny random SAM2's masks on these boxes are a coin toss of its random weights)."""
    from napari_medtrans.segment.promptnet import PromptSegmenter

    shipped = Segmenter.from_name("promptunet-phantom", device="cpu")
    return PromptSegmenter(shipped.model, name=model, weights=shipped.weights)


def test_comparison_masks_show_on_the_panes_of_the_compared_images(window, qtbot):
    seg, panes = window.segmentation, window.viewer.panes
    seg.panel.pool = SegmenterPool(_shipped_segmenter_named)
    s = window.subject
    rng = np.random.default_rng(0)
    t2 = s.images["T2"]
    fake = t2.derive(t2.data * rng.uniform(0.9, 1.1, t2.shape).astype(np.float32), synthetic=True,
                     provenance={"method": "test"})
    window.add_volumes([("T2 synth", fake), ("labels test", s.labels)])
    assert [b.currentText() for b in window.pane_boxes] == ["T1 test", "T2 synth", "T2 test"]
    p = seg.panel
    p.labels_edit.setText("4 5 6")
    request, report = _compare(qtbot, p, source="T1 test", real="T2 test", synthetic="T2 synth",
                               truth="labels test")
    keys = ["T1 test (source)", "T2 test (real)", "T2 synth (synthetic)"]
    assert [x.image for x in report.images] == keys
    text = p.table.toPlainText()
    assert "mIoU (per slice)" in text and f"{report.images[0].mean_slice_iou:.4f}" in text
    assert "T2 test (real) vs T2 synth (synthetic)" in text
    shape = window.volumes["T1 test"].shape
    for pane, key in zip(panes, (keys[0], keys[2], keys[1])):  # panes: source T1, synthetic, reference T2
        label = f"medsam2 mask of {key}"
        assert pane.overlay is not None and pane.title.endswith(f"[{label}]") and pane.toolTip() == label
        name = key.rsplit(" (", 1)[0]
        mask, shown_label = seg.overlays[name]
        assert shown_label == label and mask.shape == shape and mask.modality == "segmentation"
        np.testing.assert_array_equal(mask.data > 0, report.results[key].mask)
        # the pane paints that mask (the overlay is a view of its voxels)
        assert np.shares_memory(pane.overlay.data, mask.data)
        if not key.startswith("T1"):
            # a trained segmenter on boxes around the tumour, where the tumour shows: on this toy phantom's T1
            # (22 mm slices) the oedema does not, and an empty mask there is a fair answer
            assert mask.data.any(), f"empty mask for {key}"

    # A pane switched to another image and back gets the overlay again
    window.pane_boxes[0].setCurrentText("T2 test")
    assert panes[0].title.endswith("[medsam2 mask of T2 test (real)]")
    window.pane_boxes[0].setCurrentText("T1 test")
    assert panes[0].title.endswith("[medsam2 mask of T1 test (source)]") and panes[0].overlay is not None

    # A new comparison replaces the old overlays: the synthetic image is no longer compared
    p.compare["synthetic"].setCurrentText("(none)")
    _, report2 = _compare(qtbot, p, source="T2 test", real="T1 test")
    assert sorted(report2.results) == ["T1 test (real)", "T2 test (source)"]
    assert panes[0].title.endswith("[medsam2 mask of T1 test (real)]")
    assert panes[2].title.endswith("[medsam2 mask of T2 test (source)]")
    assert panes[1].overlay is None and panes[1].title == "Synthetic: T2 synth · T2" and panes[1].toolTip() == ""
    assert "T2 synth" not in seg.overlays and set(seg.compared) == {"T1 test", "T2 test"}
    assert window.errors == []


def test_a_new_user_segments_the_tumour_with_no_weights_imported(qtbot, tmp_path, monkeypatch):
    """No SAM2/MedSAM2 weights in the store: the panel picks the shipped segmenter, says so, and finds the tumour."""
    from napari_medtrans.core.metrics import dice
    from napari_medtrans.segment import SHIPPED

    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    w = MainWindow(AppSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(w)
    w.resize(1200, 700)
    w.show()
    errors = []
    workers.set_error_handler(lambda message, exc=None: errors.append(message))
    try:
        s = make_subject(7, tumour=True, contrasts=("FLAIR",))  # the benchmark's grid, a tumour
        w.add_volumes([("FLAIR test", s.images["FLAIR"]), ("labels test", s.labels)])
        p = w.segmentation.panel
        assert p.model_box.currentText() == SHIPPED
        assert "No SAM2/MedSAM2 weights imported" in p.status.text() and SHIPPED in p.status.text()
        p.labels_edit.setText("4 5 6")
        _, report = _compare(qtbot, p, real="FLAIR test", truth="labels test")
        result = report.results["FLAIR test (real)"]
        truth = np.isin(np.rint(s.labels.data), [4, 5, 6])
        assert dice(result.mask, truth) >= 0.7  # the card gives the mean over the test subjects
        assert w.viewer.panes[0].overlay is not None or any(pane.overlay is not None for pane in w.viewer.panes)
        assert errors == []
    finally:
        workers.cancel_all()
        workers.set_error_handler(None)
