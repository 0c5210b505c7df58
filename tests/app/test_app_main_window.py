"""The clinician app: display helpers, linked panes, the main window (open, translate, overlays, export,
settings), the demo and the self-test. Runs with QT_QPA_PLATFORM=offscreen as well as under xvfb."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from qtpy.QtCore import QPoint, QPointF, Qt

from medtrans_app.imaging import DisplayVolume, blend_overlay, colour_lut, robust_range, window_to_uint8
from medtrans_app.main_window import DEMO_MISSING, MainWindow, NONE
from medtrans_app.settings import AppSettings
from medtrans_app.viewer import LinkedViewer
from napari_medtrans.core import io
from napari_medtrans.phantom import make_subject
from napari_medtrans.core.preprocess import acquisition_axis
from napari_medtrans.qt import workers
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def subject_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("subject")
    s = make_subject(4, shape=(32, 32, 8))
    io.save(s.images["T1"], root / "T1.nii.gz")
    io.save(s.images["T2"], root / "T2.nii.gz")
    save_checkpoint(create_translator("unet", width=4, depth=2), root.parent / "tiny-unet.safetensors")
    return root


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(AppSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(w)
    w.resize(1200, 700)
    w.show()
    errors = []
    w.show_error = lambda message, exc=None: errors.append(message)
    workers.set_error_handler(w.show_error)
    w.errors = errors
    yield w
    workers.cancel_all()
    workers.set_error_handler(None)


def wait_job(qtbot, job, timeout=60000):
    if job is not None and job.running:
        with qtbot.waitSignal(job.finished, timeout=timeout):
            pass


# -- display helpers ------------------------------------------------------------------------------------
def test_display_orientation_is_radiological():
    data = np.zeros((4, 5, 3), np.float32)
    data[3, 4, 1] = 1  # patient right-most (x max), anterior-most (y max) voxel in RAS
    d = DisplayVolume.from_array(data, np.diag([2.0, 3.0, 4.0, 1.0]))
    axial = d.slice("axial", 1)
    assert axial.shape == (5, 4) and axial[0, 0] == 1  # right on the left of the screen, anterior up
    assert d.pixel_size("axial") == (2.0, 3.0) and d.voxel_at("axial", 1, 0, 0) == (3, 4, 1)
    lps = np.diag([-2.0, -3.0, 4.0, 1.0])  # the same voxel stored mirrored (an LPS-ordered array)
    flipped = DisplayVolume.from_array(data[::-1, ::-1], lps)
    np.testing.assert_array_equal(flipped.slice("axial", 1), axial)
    assert d.slice("coronal", 4)[1, 0] == 1 and d.n_slices("sagittal") == 4


def test_window_level_and_overlay_blend():
    img = np.linspace(0, 100, 11, dtype=np.float32)[None]
    out = window_to_uint8(img, (0.0, 100.0), 0.5, 1.0)
    assert out[0, 0] == 0 and out[0, -1] == 255 and out[0, 5] in (127, 128)
    narrow = window_to_uint8(img, (0.0, 100.0), 0.5, 0.2)
    assert narrow[0, 3] == 0 and narrow[0, 7] == 255
    gray = np.full((1, 3), 100, np.uint8)
    rgb = blend_overlay(gray, np.array([[0.0, 0.5, 1.0]]), (0.0, 1.0), colour_lut("inferno"), 0.5)
    assert tuple(rgb[0, 0]) == (100, 100, 100)  # zero overlay stays transparent
    assert tuple(rgb[0, 2]) != (100, 100, 100)
    lo, hi = robust_range(np.r_[np.zeros(100), np.arange(1, 101)])
    assert lo >= 1 and lo < 3 and 98 < hi <= 100


def _three_panes(qtbot):
    """A shown LinkedViewer with the same small phantom T1 in its three panes."""
    viewer = LinkedViewer(3)
    qtbot.addWidget(viewer)
    viewer.resize(900, 400)
    viewer.show()
    qtbot.waitExposed(viewer)
    vol = make_subject(1, shape=(32, 32, 10)).images["T1"]
    for i in range(3):
        viewer.set_volume(i, vol, f"pane {i}")
    return viewer


def test_linked_panes_share_slice_zoom_window_and_crosshair(qtbot):
    viewer = _three_panes(qtbot)
    assert viewer.state.n_slices == 10 and viewer.state.index == 5 and viewer.slider.value() == 5
    qtbot.keyClick(viewer, Qt.Key.Key_Up)
    qtbot.keyClick(viewer, Qt.Key.Key_PageDown)
    assert viewer.state.index == 0 and viewer.slider.value() == 0
    viewer.slider.setValue(7)
    for p in viewer.panes:
        p.grab()  # renders through paintEvent
    assert [p.painted_index for p in viewer.panes] == [7, 7, 7]
    pane = viewer.panes[2]
    centre = pane.rect().center()
    from qtpy.QtGui import QWheelEvent

    def wheel(delta, mods=Qt.KeyboardModifier.NoModifier):
        ev = QWheelEvent(QPointF(centre), QPointF(pane.mapToGlobal(centre)), QPoint(0, 0), QPoint(0, delta),
                         Qt.MouseButton.NoButton, mods, Qt.ScrollPhase.NoScrollPhase, False)
        pane.wheelEvent(ev)

    wheel(120)
    assert viewer.state.index == 8
    wheel(120, Qt.KeyboardModifier.ControlModifier)
    assert viewer.state.zoom > 1.0
    qtbot.mouseClick(pane, Qt.MouseButton.LeftButton, pos=centre)
    assert viewer.state.crosshair is not None
    viewer.preset_box.setCurrentText("High contrast")
    assert (viewer.state.level, viewer.state.width) == (0.5, 0.6)
    hit = viewer.panes[0].value_at(QPointF(centre))
    assert hit is not None and isinstance(hit[2], float)
    viewer.plane_box.setCurrentText("sagittal")
    assert viewer.state.n_slices == 32


def test_drags_pan_and_window_every_linked_pane(qtbot):
    from qtpy.QtCore import QEvent
    from qtpy.QtGui import QMouseEvent

    viewer = _three_panes(qtbot)
    pane, other = viewer.panes[1], viewer.panes[0]

    def drag(button, dx, dy):
        start = QPointF(pane.rect().center())
        end = start + QPointF(dx, dy)
        none = Qt.KeyboardModifier.NoModifier
        pane.mousePressEvent(QMouseEvent(QEvent.Type.MouseButtonPress, start, start, button, button, none))
        pane.mouseMoveEvent(QMouseEvent(QEvent.Type.MouseMove, end, end, Qt.MouseButton.NoButton, button, none))
        pane.mouseReleaseEvent(QMouseEvent(QEvent.Type.MouseButtonRelease, end, end, button,
                                           Qt.MouseButton.NoButton, none))

    origin = other.to_image(QPointF(100, 100))
    drag(Qt.MouseButton.MiddleButton, 30, -20)
    assert viewer.state.pan == (30.0, -20.0)
    moved = other.to_image(QPointF(130, 80))  # the other pane moved with it: same image point 30 px right, 20 up
    assert moved == pytest.approx(origin)
    level, width = viewer.state.level, viewer.state.width
    drag(Qt.MouseButton.RightButton, 90, -40)  # right: wider window; up: higher level
    assert viewer.state.width > width and viewer.state.level > level
    assert viewer.state.crosshair is None  # neither drag set a crosshair


# -- the main window ----------------------------------------------------------------------------------------
def test_open_translate_overlay_export(qtbot, window, subject_dir, tmp_path):
    job = window.open_case(str(subject_dir))
    wait_job(qtbot, job)
    assert set(window.volumes) == {"T1", "T2"}
    assert window.pane_boxes[0].currentText() == "T1" and window.pane_boxes[2].currentText() == "T2"
    panel = window.translate_panel
    panel.add_model_file(subject_dir.parent / "tiny-unet.safetensors")
    panel.inputs._boxes["T1"].setCurrentText("T1")
    translation = panel.run()
    assert window.viewer.panes[1].banner.startswith("SYNTHETIC")  # the running preview is marked too
    # Each slice along the acquisition axis lies in one piece, so a partial block touches only its own pages.
    preview = window.preview.data
    assert preview.shape == window.volumes["T1"].shape
    assert int(np.argmax(preview.strides)) == acquisition_axis(window.volumes["T1"])
    wait_job(qtbot, translation)
    names = [n for n in window.volumes if n.startswith("SYNTHETIC")]
    assert len(names) == 1 and window.pane_boxes[1].currentText() == names[0]
    pane = window.viewer.panes[1]
    assert pane.banner == "SYNTHETIC - unet" and "SYNTHETIC" in pane.title
    shot = pane.grab().toImage()  # the banner is painted: a red band along the bottom of the pane
    band = shot.pixelColor(4, shot.height() - 13)
    assert band.red() > 120 and band.green() < 40 and band.blue() < 40
    plain = window.viewer.panes[0].grab().toImage()
    assert plain.pixelColor(4, plain.height() - 13).red() < 120  # the acquired T1 pane has none
    assert window.volumes[names[0]].synthetic and not window.errors
    # Error map overlay (computed in a worker) with opacity.
    window.overlay_box.setCurrentIndex(2)
    qtbot.waitUntil(lambda: pane.overlay is not None, timeout=20000)
    window.opacity.setValue(80)
    assert pane.overlay_opacity == pytest.approx(0.8)
    assert window.colour_bar.isVisible() and "Absolute difference" in window.legend.text()
    window.overlay_box.setCurrentIndex(1)
    assert pane.overlay is None and "no TSM map" in window.status_label.text()
    assert not window.colour_bar.isVisible() and not window.legend.isVisible()
    window.overlay_box.setCurrentIndex(3)  # a deterministic model, one sample: no spread, and it says why
    assert pane.overlay is None and "samples > 1" in window.status_label.text()
    synth_vol = window.volumes[names[0]]  # a model that makes a TSM: the overlay says what it is and is not
    window.maps[names[0]] = {"tsm": synth_vol.derive(np.full(synth_vol.shape, 0.5, np.float32))}
    window.overlay_box.setCurrentIndex(1)
    assert pane.overlay is not None and window.colour_bar.isVisible()
    assert "texture" in window.overlay_box.currentText() and "not a measure of error" in window.legend.text()
    # Export the synthetic volume to DICOM through the export panel.
    export = window.export_panel
    assert export.volume_box.itemText(0) == names[0]
    export.out_edit.setText(str(tmp_path / "dicom_out"))
    job = export.export()
    wait_job(qtbot, job)
    files = sorted((tmp_path / "dicom_out").glob("*"))
    assert len(files) == 8
    ds = pydicom.dcmread(files[0])
    assert ds.SeriesDescription.startswith("SYNTHETIC") and ds.SyntheticData == "YES"


@pytest.fixture(scope="module")
def phantom_subject(tmp_path_factory):
    """A subject folder as ``medtrans phantom`` writes it: T1, T2, FLAIR, PD, T1c, labels, brain mask."""
    from napari_medtrans.phantom.dataset import write_phantom_dataset

    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, 1, shape=(32, 32, 8))
    return root / "sub-000"


def test_reference_pane_follows_the_synthetic_contrast_and_cross_contrast_error_maps_are_refused(
        qtbot, window, phantom_subject, subject_dir):
    wait_job(qtbot, window.open_case(str(phantom_subject)))
    assert {"T1", "T2", "PD", "FLAIR", "T1c"} <= set(window.volumes)
    assert window.pane_boxes[0].currentText() == "T1"  # the translator's input contrast, not the first file
    assert window.viewer.panes[0].title == "Source: T1 · T1"  # every pane names its contrast
    window.overlay_box.setCurrentIndex(2)  # the error map overlay, on before the result arrives
    panel = window.translate_panel
    panel.add_model_file(subject_dir.parent / "tiny-unet.safetensors")
    panel.inputs._boxes["T1"].setCurrentText("T1")
    wait_job(qtbot, panel.run())
    synthetic = [n for n in window.volumes if n.startswith("SYNTHETIC")]
    assert len(synthetic) == 1 and window.volumes[synthetic[0]].modality == "T2"
    assert window.pane_boxes[1].currentText() == synthetic[0]
    assert window.pane_boxes[2].currentText() == "T2"  # the acquired T2, never PD
    pane = window.viewer.panes[1]
    qtbot.waitUntil(lambda: pane.overlay is not None, timeout=20000)
    assert not window.errors
    # the user picks PD as the reference: the error map is refused, in words
    window.pane_boxes[2].setCurrentText("PD")
    assert pane.overlay is None and "no error map" in window.status_label.text()
    assert len(window.errors) == 1 and "reference is PD but the synthetic image is T2" in window.errors[0]
    assert "Traceback" not in window.errors[0]
    window.pane_boxes[2].setCurrentText("T1c")
    assert pane.overlay is None and len(window.errors) == 2 and "reference is T1c" in window.errors[1]
    window.pane_boxes[2].setCurrentText("T2")
    qtbot.waitUntil(lambda: pane.overlay is not None, timeout=20000)


def test_worklist_opens_nifti_files_and_dicom_folders(qtbot, window, subject_dir, tmp_path):
    from napari_medtrans.core.io.dicom_write import write_dicom_series

    t2 = io.load(subject_dir / "T2.nii.gz")
    write_dicom_series(t2, tmp_path / "dicom", series_description="T2 AX")
    window.open_paths([str(subject_dir / "T1.nii.gz")])
    wait_job(qtbot, window.jobs[-1])
    window.worklist.add(tmp_path / "dicom")
    assert window.worklist.paths() == [str(subject_dir / "T1.nii.gz"), str(tmp_path / "dicom")]
    window.worklist.list.itemActivated.emit(window.worklist.list.item(1))  # what double-click / Enter does
    wait_job(qtbot, window.jobs[-1])
    assert set(window.volumes) == {"T1", "T2 AX"} and not window.errors
    np.testing.assert_allclose(window.volumes["T2 AX"].affine, t2.affine, atol=1e-4)
    np.testing.assert_allclose(window.volumes["T2 AX"].data, t2.data, atol=1e-3 * np.abs(t2.data).max())


def test_recent_files_and_settings_persist(qtbot, tmp_path, subject_dir):
    settings = AppSettings(tmp_path / "s.ini")
    w = MainWindow(settings)
    qtbot.addWidget(w)
    wait_job(qtbot, w.open_case(str(subject_dir)))
    w.open_paths([str(subject_dir / "T1.nii.gz")])
    wait_job(qtbot, w.jobs[-1])
    w.pane_count.setCurrentIndex(1)
    w.viewer.preset_box.setCurrentText("Bright")
    w.close()
    again = MainWindow(AppSettings(tmp_path / "s.ini"))
    qtbot.addWidget(again)
    assert again.settings.recent()[0] == str(subject_dir / "T1.nii.gz")
    assert [a.text() for a in again.recent_menu.actions()] == [str(subject_dir / "T1.nii.gz")]
    assert again.viewer.n_panes == 2 and again.viewer.preset_box.currentText() == "Bright"
    again.close()


def test_unreadable_case_is_reported_in_words(qtbot, window, tmp_path):
    (tmp_path / "empty").mkdir()
    wait_job(qtbot, window.open_case(str(tmp_path / "empty")))
    assert window.errors and "empty" in window.errors[0]
    assert window.pane_boxes[0].currentText() == NONE


def test_demo_says_clearly_when_the_demo_model_is_missing(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRANS_RESOURCES", str(tmp_path / "no-resources"))
    job = window.setup_demo(shape=(24, 24, 6))
    assert window.demo_model is None and DEMO_MISSING in window.errors[0]
    wait_job(qtbot, job)
    assert "T1 (phantom 1000)" in window.volumes
    labels = [window.translate_panel.model_box.itemText(i) for i in range(window.translate_panel.model_box.count())]
    assert all("untrained" in t or t == "load file..." for t in labels)  # nothing passes for a trained model


def test_demo_selects_the_shipped_model(qtbot, window, tmp_path, monkeypatch, subject_dir):
    res = tmp_path / "res"
    (res / "models").mkdir(parents=True)
    (res / "models" / "demo-t1-t2.safetensors").write_bytes((subject_dir.parent / "tiny-unet.safetensors").read_bytes())
    monkeypatch.setenv("MEDTRANS_RESOURCES", str(res))
    job = window.setup_demo(shape=(24, 24, 6))
    wait_job(qtbot, job)
    assert window.demo_model.endswith("demo-t1-t2.safetensors") and not window.errors
    assert window.translate_panel.current_choice().value.endswith("demo-t1-t2.safetensors")


def test_self_test_exits_zero(qapp):
    from medtrans_app.selftest import run_self_test

    lines = []
    assert run_self_test(shape=(32, 32, 4), out=lines.append) == 0
    assert lines[0].startswith("self-test ok")
    workers.set_error_handler(None)


def test_app_never_imports_napari():
    code = ("import sys, json\nimport medtrans_app.__main__, medtrans_app.main_window, medtrans_app.reader\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "napari" not in loaded and "magicgui" not in loaded and "vispy" not in loaded


def test_a_subject_folder_with_nifti_and_dicom_opens_each_scan_once_t1_and_t2_in_the_panes(qtbot, window, tmp_path):
    """Issue 21 item 5: `medtrans phantom --dicom` writes every contrast as NIfTI and as DICOM; opening the folder
    shows each scan once (its DICOM series) and, before a model is chosen, T1 as the source and T2 as the
    reference, not FLAIR and PD (alphabetical)."""
    from napari_medtrans.phantom import write_phantom_dataset

    write_phantom_dataset(tmp_path / "ph", 1, shape=(24, 24, 8), dicom=True, anatomy="procedural")
    window.translate_panel.model_box.setCurrentIndex(-1)  # no model: nothing says which contrasts it takes
    wait_job(qtbot, window.open_case(str(tmp_path / "ph" / "sub-000")))
    contrasts = [v.modality for v in window.volumes.values() if v.modality in ("T1", "T2", "FLAIR", "PD", "T1c")]
    assert sorted(contrasts) == ["FLAIR", "PD", "T1", "T1c", "T2"]  # once each
    shown = [window.volumes[window.pane_boxes[i].currentText()].modality for i in (0, 2)]
    assert shown == ["T1", "T2"] and not window.errors


def test_every_output_of_a_multi_output_model_is_added(qtbot, window, subject_dir, tmp_path):
    """Issue 21 item 4: a model with two outputs (CDM makes T1c and FLAIR) gives two SYNTHETIC volumes in the
    app, not one."""
    path = tmp_path / "two-out.safetensors"
    save_checkpoint(create_translator("unet", inputs=("T1",), outputs=("T1c", "FLAIR"), width=4, depth=2), path,
                    normalisation={"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                                   "outputs": {"T1c": {"lo": 0.0, "hi": 2.0}, "FLAIR": {"lo": 0.0, "hi": 3.0}}})
    wait_job(qtbot, window.open_case(str(subject_dir)))
    panel = window.translate_panel
    panel.add_model_file(path)
    qtbot.waitUntil(lambda: panel.spec_label.text().startswith("unet: T1 -> T1c+FLAIR"), timeout=20000)
    wait_job(qtbot, panel.run())
    made = sorted(v.modality for v in window.volumes.values() if v.synthetic)
    assert made == ["FLAIR", "T1c"] and not window.errors
    names = [n for n, v in window.volumes.items() if v.synthetic]
    assert all(n.startswith("SYNTHETIC") for n in names)
    assert window.export_panel.volume_box.findText(names[1]) >= 0
    box = panel.inputs._boxes["T1"]  # a new run is made from acquired images only
    assert [box.itemText(i) for i in range(box.count())] and \
        not any(box.itemText(i).startswith("SYNTHETIC") for i in range(box.count()))


def test_cancel_keeps_the_finished_slices_marked_partial_and_progress_says_time_left(qtbot, window, subject_dir,
                                                                                      monkeypatch):
    """Issue 21 item 3: per-slice progress with an estimate of the time left; Cancel keeps what was finished as
    a volume marked partial, which export refuses."""
    import time

    import torch

    from napari_medtrans.qt import translation
    from napari_medtrans.translators import TranslationOutput, Translator, TranslatorSpec

    class Slow(Translator):
        def __init__(self):
            super().__init__(TranslatorSpec(method="slow-test", inputs=("T1",), outputs=("T2",), stochastic=True))

        def translate(self, x, *, steps=None, generator=None):
            time.sleep(0.15)
            return TranslationOutput(image=torch.tanh(x))

    wait_job(qtbot, window.open_case(str(subject_dir)))
    panel = window.translate_panel
    panel.add_model_file(subject_dir.parent / "tiny-unet.safetensors")
    monkeypatch.setattr(translation, "build_translator", lambda choice, device="cpu": Slow())
    texts = []
    panel.progress.valueChanged.connect(lambda v: texts.append(panel.status.text()))
    job = panel.run()
    qtbot.waitUntil(lambda: panel.progress.value() >= 3, timeout=30000)
    panel.cancel()
    wait_job(qtbot, job)
    # one slice per call (a sampling model on the CPU): the bar moves slice by slice, with the time left
    assert panel.progress.maximum() == 8 or texts
    assert any("of 8 slices, about" in t and "left" in t for t in texts), texts
    names = [n for n in window.volumes if n.startswith("SYNTHETIC (partial")]
    assert len(names) == 1 and window.pane_boxes[1].currentText() == names[0]
    vol = window.volumes[names[0]]
    p = vol.provenance["partial"]
    assert vol.synthetic and 3 <= p["slices_done"] < 8 and names[0].startswith(f"SYNTHETIC (partial: {p['slices_done']} of 8")
    assert "cancelled" in window.status_label.text() and not window.errors
    from napari_medtrans.core.errors import ExportError
    from napari_medtrans.core.io.dicom_export import export_dicom_series

    with pytest.raises(ExportError, match="partial"):
        export_dicom_series(vol, subject_dir.parent / "never")
