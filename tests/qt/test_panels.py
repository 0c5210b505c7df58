"""The shared Qt panels (no napari): translate, inspect, export, and the logic behind them.

Runs with QT_QPA_PLATFORM=offscreen as well as under xvfb.
"""

from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest
import torch
from qtpy.QtCore import QPoint, Qt

from napari_medtrans.core.errors import GeometryMismatchError, ModalityMismatchError
from napari_medtrans.core.io import load
from napari_medtrans.core.metrics import evaluate_volumes
from napari_medtrans.phantom import make_subject
from napari_medtrans.qt import translation, workers
from napari_medtrans.qt.export_panel import ExportPanel
from napari_medtrans.qt.inspect_panel import InspectPanel
from napari_medtrans.qt.inspection import inspect_volumes, trust_curve
from napari_medtrans.qt.translate_panel import TranslatePanel
from napari_medtrans.translators import TranslationOutput, Translator, TranslatorSpec, create_translator
from napari_medtrans.translators.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def subject():
    return make_subject(3, shape=(32, 32, 16), tumour=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny-unet.safetensors"
    save_checkpoint(create_translator("unet", width=4, depth=2), path)
    return path


@pytest.fixture
def messages(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    got: list[str] = []
    previous = workers.set_error_handler(lambda message, exc: got.append(message))
    yield got
    workers.set_error_handler(previous)


def wait_job(qtbot, job, timeout=60000):
    if job.running:
        with qtbot.waitSignal(job.finished, timeout=timeout):
            pass


# -- translation logic ---------------------------------------------------------------------------------------
def test_model_choices_list_shipped_store_loaded_then_untrained(tmp_path, monkeypatch):
    (tmp_path / "res" / "models").mkdir(parents=True)
    (tmp_path / "res" / "models" / "demo-t1-t2.safetensors").write_bytes(b"x")
    (tmp_path / "res" / "models" / "cdm-t1t2-t1cflair.safetensors").write_bytes(b"x")  # sorts before "demo"
    (tmp_path / "res" / "models" / "mrnet-flair-t2.safetensors").write_bytes(b"x")
    (tmp_path / "home" / "weights").mkdir(parents=True)
    (tmp_path / "home" / "weights" / "mine.pt").write_bytes(b"x")
    (tmp_path / "home" / "weights" / "notes.txt").write_text("not a model")
    (tmp_path / "home" / "weights" / "vgg16-397923af.pth").write_bytes(b"x")  # TSM's backbone, not a translator
    monkeypatch.setenv("MEDTRANS_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    choices = translation.model_choices([tmp_path / "other.onnx"])
    labels = [c.label for c in choices]
    # the demo model stays the first (default) choice, the other shipped models follow by name
    assert labels[:5] == ["demo-t1-t2.safetensors (shipped)", "cdm-t1t2-t1cflair.safetensors (shipped)",
                          "mrnet-flair-t2.safetensors (shipped)", "mine.pt (weights store)", "other.onnx (file)"]
    assert not any("vgg16" in label for label in labels)
    methods = [c for c in choices if c.kind == "method"]
    assert {c.value for c in methods} >= {"unet", "pix2pix", "edts-trans"}
    assert all("untrained" in c.label for c in methods)


def test_describe_choice_reads_the_spec_and_sha(tiny_model):
    choice = translation.ModelChoice("tiny", "checkpoint", str(tiny_model))
    spec = translation.describe_choice(None, choice)
    assert spec["method"] == "unet" and spec["inputs"] == ["T1"] and len(spec["sha256"]) == 64


def test_choosing_a_model_file_loads_it_for_the_next_run(tiny_model):
    """Choosing a model loads it (the first slice of the first run shows sooner); a run takes it and gives it back;
    a changed file is loaded again; a model made from a method name is never kept."""
    import os

    choice = translation.ModelChoice("tiny", "checkpoint", str(tiny_model))
    translation.describe_choice(None, choice)
    kept = translation.take_translator(choice)
    assert translation.take_translator(choice) is not kept  # taken out: a second run builds its own
    translation.keep_translator(choice, kept)
    assert translation.take_translator(choice) is kept
    translation.keep_translator(choice, kept)
    st = os.stat(tiny_model)
    os.utime(tiny_model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file was replaced
    assert translation.take_translator(choice) is not kept
    method = translation.ModelChoice("unet", "method", "unet")
    made = translation.take_translator(method)
    translation.keep_translator(method, made)
    assert translation.take_translator(method) is not made


def test_a_model_that_cannot_be_loaded_ahead_still_shows_its_spec(tiny_model, monkeypatch):
    """Loading on choice is an extra: a file that cannot be built then (weights missing from the store) still shows
    its spec, and Run reports the failure as before."""
    from napari_medtrans.core.errors import MedtransError

    def fail(choice, device="cpu"):
        raise MedtransError("weights 'vgg16' are not in the store", choice.value)

    monkeypatch.setattr(translation, "build_translator", fail)
    choice = translation.ModelChoice("tiny", "checkpoint", str(tiny_model))
    assert translation.describe_choice(None, choice)["method"] == "unet"
    with pytest.raises(MedtransError, match="not in the store"):
        translation.take_translator(choice)  # nothing kept: the run builds it and fails with the reason


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_preview_buffer_keeps_each_slice_along_the_axis_in_one_piece(axis):
    buffer = translation.preview_buffer((5, 6, 7), axis)
    assert buffer.shape == (5, 6, 7) and buffer.dtype == np.float32 and not buffer.any()
    index = [slice(None)] * 3
    index[axis] = slice(2, 4)
    block = buffer[tuple(index)]
    span = sum((n - 1) * st for n, st in zip(block.shape, block.strides)) + block.itemsize
    assert span == block.nbytes  # the block occupies exactly its own bytes: no other slice's pages
    buffer[tuple(index)] = 1.0
    assert buffer.sum() == block.size


def test_merge_partials_joins_adjacent_blocks_only():
    data = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)
    payloads = [(2, 0, 2, data[:, :, 0:2]), (2, 2, 5, data[:, :, 2:5]), (2, 6, 8, data[:, :, 6:8]),
                (0, 0, 1, data[0:1])]
    merged = translation.merge_partials(payloads)
    assert [(axis, a, b) for axis, a, b, _ in merged] == [(2, 0, 5), (2, 6, 8), (0, 0, 1)]
    np.testing.assert_array_equal(merged[0][3], data[:, :, 0:5])
    assert merged[1][3] is payloads[2][3]  # a lone block is passed on as it is
    assert translation.merge_partials([]) == []


def test_gui_core_left_sets_torch_threads_inside_and_restores_them():
    import os

    before = torch.get_num_threads()
    cores = os.cpu_count() or 1
    try:
        torch.set_num_threads(max(1, cores))
        with translation.gui_core_left() as n:
            assert n == max(1, cores - 1) and torch.get_num_threads() == n
            with translation.gui_core_left(1):  # an explicit count is used as given
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1  # shared until the last user leaves
        assert torch.get_num_threads() == max(1, cores)
        torch.set_num_threads(1)
        with translation.gui_core_left():  # never raises a count set lower
            assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match='"threads"'):
            with translation.gui_core_left(0):
                pass
    finally:
        torch.set_num_threads(before)


# -- translate panel -----------------------------------------------------------------------------------------
def test_translate_panel_runs_and_streams_slices(qtbot, subject, tiny_model, messages):
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    vols = {"T1 s3": subject.images["T1"], "T2 s3": subject.images["T2"]}
    panel.volume_provider = vols.__getitem__
    panel.set_sources([("T2 s3", "T2"), ("T1 s3", "T1")])
    panel.add_model_file(tiny_model)
    qtbot.waitUntil(lambda: panel.spec_label.text().startswith("unet"), timeout=20000)
    assert panel.input_names() == {"T1": "T1 s3"}  # picked by modality
    assert not panel.samples_box.isEnabled()  # deterministic model: one sample only

    partial, results = [], []
    panel.partial_ready.connect(lambda req, axis, a, b, block: partial.append((axis, a, b, block.shape)))
    panel.translated.connect(lambda req, result: results.append(result))
    job = panel.run()
    wait_job(qtbot, job)
    assert messages == []
    (result,) = results
    assert result.volume.synthetic and np.allclose(result.volume.affine, subject.images["T1"].affine)
    covered = sorted((a, b) for _axis, a, b, _shape in partial)
    assert covered[0][0] == 0 and covered[-1][1] == 16 and all(x[1] == y[0] for x, y in zip(covered, covered[1:]))
    assert panel.progress.value() == panel.progress.maximum() and panel.run_button.isEnabled()


def test_partials_are_joined_and_all_arrive_before_the_result(qtbot, monkeypatch, subject, messages):
    from types import SimpleNamespace

    def burst(job, request):  # many small blocks at once, as a fast model on a small volume sends them
        for a in range(0, 16, 2):
            job.report_partial((2, a, a + 2, np.full((32, 32, 2), a, np.float32)))
        return SimpleNamespace(seconds=0.0, device="cpu")

    monkeypatch.setattr(translation, "run_translation", burst)
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    panel.volume_provider = {"T1": subject.images["T1"]}.__getitem__
    panel.set_sources([("T1", "T1")])
    events = []
    panel.partial_ready.connect(lambda req, axis, a, b, block: events.append(("partial", a, b, block.copy())))
    panel.translated.connect(lambda req, result: events.append(("result",)))
    job = panel.run()
    assert job.wait(10000)  # every partial is queued before the GUI sees the first
    qtbot.waitUntil(lambda: bool(events) and events[-1] == ("result",), timeout=10000)
    partials = events[:-1]
    assert partials and all(e[0] == "partial" for e in partials)
    assert partials[0][1] == 0 and partials[-1][2] == 16
    assert all(x[2] == y[1] for x, y in zip(partials, partials[1:]))
    for _kind, a, b, block in partials:
        np.testing.assert_array_equal(block[0, 0], np.repeat(np.arange(a, b, 2), 2))
    assert len(partials) == 1 and messages == []  # the burst reached the GUI as one block


def test_partials_not_yet_shown_give_way_to_the_result(qtbot, monkeypatch, subject, messages):
    import threading
    from types import SimpleNamespace

    go = threading.Event()

    def two_blocks(job, request):
        job.report_partial((2, 0, 8, np.zeros((32, 32, 8), np.float32)))
        go.wait(10)
        job.report_partial((2, 8, 16, np.ones((32, 32, 8), np.float32)))
        return SimpleNamespace(seconds=0.0, device="cpu")

    monkeypatch.setattr(translation, "run_translation", two_blocks)
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    panel.volume_provider = {"T1": subject.images["T1"]}.__getitem__
    panel.set_sources([("T1", "T1")])
    events = []
    panel.partial_ready.connect(lambda req, axis, a, b, block: events.append((a, b)))
    panel.translated.connect(lambda req, result: events.append("result"))
    job = panel.run()
    qtbot.waitUntil(lambda: events == [(0, 8)], timeout=10000)  # the first block is shown while it runs
    go.set()
    assert job.wait(10000)  # the second block and the result are queued together
    qtbot.waitUntil(lambda: "result" in events, timeout=10000)
    assert events == [(0, 8), "result"] and messages == []


class SlowTranslator(Translator):
    """Sleeps in every network call and counts the calls."""

    def __init__(self):
        super().__init__(TranslatorSpec(method="slow-test", inputs=("T1",), outputs=("T2",)))
        self.calls = 0

    def translate(self, x, *, steps=None, generator=None):
        self.calls += 1
        time.sleep(0.4)
        return TranslationOutput(image=torch.tanh(x))


def test_cancel_stops_within_one_batch_and_reports_no_error(qtbot, monkeypatch, messages):
    slow = SlowTranslator()
    monkeypatch.setattr(translation, "build_translator", lambda choice, device="cpu": slow)
    big = make_subject(1, shape=(256, 256, 24), snr=None, bias=False, deform=False).images["T1"]  # 3 CPU batches
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    panel.volume_provider = {"T1": big}.__getitem__
    panel.set_sources([("T1", "T1")])
    stopped, cancel_at = [], []

    def cancel_on_first(*_args):
        if not cancel_at:
            cancel_at.append((time.perf_counter(), slow.calls))
            panel.cancel()

    panel.partial_ready.connect(cancel_on_first)
    panel.stopped.connect(lambda req, reason: stopped.append((time.perf_counter(), reason)))
    job = panel.run()
    wait_job(qtbot, job)
    assert [r for _t, r in stopped] == ["cancelled"] and messages == []
    assert slow.calls <= cancel_at[0][1] + 1  # at most the batch already running finished
    assert panel.status.text() == "translation cancelled"


def test_translate_errors_go_to_the_sink(qtbot, tmp_path, subject, messages):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 10)
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    panel.volume_provider = {"T1": subject.images["T1"]}.__getitem__
    panel.set_sources([("T1", "T1")])
    panel.add_model_file(bad)
    qtbot.waitUntil(lambda: bool(messages), timeout=20000)  # reading its spec fails
    job = panel.run()
    wait_job(qtbot, job)
    assert all(str(bad) in m for m in messages) and len(messages) == 2
    assert panel.run_button.isEnabled()


# -- inspection ----------------------------------------------------------------------------------------------
def test_trust_curve_bins_errors_by_map_value():
    trust = np.array([0.05, 0.15, 0.95, 0.85, 0.9])
    error = np.array([1.0, 3.0, 10.0, 20.0, 30.0])
    curve = trust_curve(trust, error, None, "tsm", bins=2)
    np.testing.assert_allclose(curve.edges, [0.05, 0.5, 0.95])
    np.testing.assert_allclose(curve.mean_error, [2.0, 20.0])
    assert list(curve.count) == [2, 3]
    assert curve.correlation == pytest.approx(np.corrcoef(trust, error)[0, 1]) and curve.correlation > 0.5


def test_inspect_volumes_error_maps_and_grid_check(subject):
    syn = subject.images["T2"].derive(subject.images["T2"].data + 5.0, synthetic=True)
    ins = inspect_volumes(syn, subject.images["T2"], mask=subject.brain_mask)
    np.testing.assert_allclose(ins.signed_error.data, 5.0, atol=1e-4)
    assert ins.abs_error.same_grid(syn) and ins.error_limit == pytest.approx(5.0, abs=1e-3)
    assert ins.per_slice["mae"].shape == (16,)
    other = subject.images["T2"].derive(subject.images["T2"].data)
    other.affine[0, 3] += 4.0
    with pytest.raises(GeometryMismatchError, match="reference"):
        inspect_volumes(syn, other)


def test_inspect_panel_metrics_slice_and_plot_click(qtbot, subject, messages):
    syn = subject.images["T2"].derive(subject.images["T2"].data * 0.9 + 3.0, synthetic=True)
    tsm = syn.derive(np.random.default_rng(0).random(syn.shape), modality="tsm")
    vols = {"syn": syn, "T2": subject.images["T2"], "labels": subject.labels, "tsm of syn": tsm}
    panel = InspectPanel()
    qtbot.addWidget(panel)
    panel.resize(500, 700)
    panel.show()
    panel.volume_provider = vols.__getitem__
    panel.set_sources(["syn"], ["T2"], ["labels"], ["tsm of syn"])
    assert panel.mask_box.currentText() == "labels" and panel.trust_box.currentText() == "tsm of syn"
    with qtbot.waitSignal(panel.inspected, timeout=30000):
        panel.compute()
    expected = evaluate_volumes(syn, subject.images["T2"], subject.labels.data != 0)
    assert f"PSNR {expected['psnr']:.2f} dB" in panel.volume_label.text()
    assert f"SSIM {expected['ssim']:.4f}" in panel.volume_label.text()
    panel.set_current_slice(7)
    psnr7 = panel.inspection.per_slice["psnr"][7]
    assert panel.slice_label.text().startswith(f"7: PSNR {psnr7:.2f} dB")
    assert panel.inspection.trust is not None and panel.inspection.trust.map_name == "tsm"

    canvas = panel.slice_plot
    canvas.draw()
    x, y = canvas.axes.transData.transform((11, np.nanmean(panel.inspection.per_slice["psnr"])))
    ratio = canvas.devicePixelRatioF()
    pos = QPoint(int(round(x / ratio)), int(round((canvas.figure.bbox.height - y) / ratio)))
    with qtbot.waitSignal(panel.slice_requested, timeout=5000) as blocker:
        qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == [11]


def test_inspect_volumes_refuses_another_contrast_unless_overridden(subject):
    syn = subject.images["T2"].derive(subject.images["T2"].data + 5.0, synthetic=True)
    with pytest.raises(ModalityMismatchError, match="reference is PD but the synthetic image is T2"):
        inspect_volumes(syn, subject.images["PD"])
    forced = inspect_volumes(syn, subject.images["PD"], allow_mismatch=True)
    assert any("different contrasts" in w for w in forced.warnings)
    assert inspect_volumes(syn, subject.images["T2"]).warnings == []


def inspect_panel(qtbot, vols):
    panel = InspectPanel()
    qtbot.addWidget(panel)
    panel.volume_provider = vols.__getitem__
    return panel


def test_inspect_panel_shows_contrasts_and_defaults_to_the_same_contrast(qtbot, subject, messages):
    syn = subject.images["T2"].derive(subject.images["T2"].data * 0.9, synthetic=True)
    vols = {"SYNTHETIC T2": syn, **{m: subject.images[m] for m in ("FLAIR", "PD", "T1", "T2")}}
    panel = inspect_panel(qtbot, vols)
    acquired = [(m, m) for m in ("FLAIR", "PD", "T1", "T2")]
    panel.set_sources([("SYNTHETIC T2", "T2")] + acquired, acquired, [], [])
    assert panel.synthetic_box.currentText() == "SYNTHETIC T2" and panel.reference_box.currentText() == "T2"
    assert panel.contrast_label.text() == "synthetic T2, reference T2" and panel.warning_label.text() == ""
    tip = panel.reference_box.itemData(panel.reference_box.findText("PD"), Qt.ItemDataRole.ToolTipRole)
    assert tip == "PD: PD"
    # a refresh keeps a compatible pick someone made; another synthetic image gets a reference of its own contrast
    panel.synthetic_box.setCurrentText("FLAIR")
    assert panel.reference_box.currentText() == "(none)"  # FLAIR's only FLAIR is itself: nothing, not itself
    assert "no reference" in panel.warning_label.text()
    panel.synthetic_box.setCurrentText("SYNTHETIC T2")
    assert panel.reference_box.currentText() == "T2"


def test_inspect_panel_refuses_another_contrast_with_a_message(qtbot, subject, messages):
    syn = subject.images["T2"].derive(subject.images["T2"].data * 0.9, synthetic=True)
    vols = {"SYNTHETIC T2": syn, "PD": subject.images["PD"], "T2": subject.images["T2"]}
    panel = inspect_panel(qtbot, vols)
    panel.set_sources([("SYNTHETIC T2", "T2")], [("PD", "PD"), ("T2", "T2")], [], [])
    panel.reference_box.setCurrentText("PD")
    assert "refused" in panel.warning_label.text() and "reference PD" in panel.contrast_label.text()
    inspected = []
    panel.inspected.connect(inspected.append)
    assert panel.compute() is None
    assert len(messages) == 1 and "reference is PD but the synthetic image is T2" in messages[0]
    assert "refused" in panel.volume_label.text() and panel.compute_button.isEnabled()
    # a refresh of the lists keeps only a pick that may be compared: PD gives way to the T2
    panel.set_sources([("SYNTHETIC T2", "T2")], [("PD", "PD"), ("T2", "T2")], [], [])
    assert panel.reference_box.currentText() == "T2"
    panel.reference_box.setCurrentText("PD")
    panel.override_box.setChecked(True)  # the explicit override: computed, with the warning shown
    with qtbot.waitSignal(panel.inspected, timeout=30000):
        assert panel.compute() is not None
    assert "different contrasts" in panel.warning_label.text() and len(messages) == 1
    assert panel.inspection.warnings and inspected == [panel.inspection]
    panel.set_sources([("SYNTHETIC T2", "T2")], [("PD", "PD"), ("T2", "T2")], [], [])
    assert panel.reference_box.currentText() == "PD"  # with the override ticked, the pick stands


# -- export --------------------------------------------------------------------------------------------------
def test_export_panel_writes_dicom_in_source_study_and_nifti(qtbot, tmp_path, messages):
    from napari_medtrans.core.io.dicom_write import write_dicom_series

    t1 = make_subject(2, shape=(32, 32, 8)).images["T1"]
    write_dicom_series(t1, tmp_path / "src", series_description="T1", patient_id="P-9")
    src = load(tmp_path / "src")
    syn = src.derive(src.data * 0.5, modality="T2", synthetic=True, provenance={"method": "unet"})
    panel = ExportPanel()
    qtbot.addWidget(panel)
    panel.volume_provider = {"SYNTHETIC T2": syn}.__getitem__
    panel.set_sources(["SYNTHETIC T2"])
    assert "made from" in panel.source_label.text()
    panel.out_edit.setText(str(tmp_path / "out"))
    panel.deidentify_box.setChecked(True)
    wait_job(qtbot, panel.export())
    files = sorted((tmp_path / "out").glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert len(files) == 8 and ds.SyntheticData == "YES" and ds.PatientID == "ANONYMOUS"
    assert panel.status.text().startswith("wrote 8 file(s)")

    panel.format_box.setCurrentIndex(panel.format_box.findData("nifti"))
    panel.out_edit.setText(str(tmp_path / "t2"))
    wait_job(qtbot, panel.export())
    back = load(tmp_path / "t2.nii.gz")
    assert back.synthetic and np.allclose(back.affine, syn.affine)

    panel.out_edit.setText(str(tmp_path / "out"))  # not empty any more
    panel.format_box.setCurrentIndex(panel.format_box.findData("dicom"))
    wait_job(qtbot, panel.export())
    assert messages and "folder is not empty" in messages[-1] and str(tmp_path / "out") in messages[-1]


def test_multi_input_model_gets_one_input_per_modality(qtbot, tmp_path, subject, messages):
    path = tmp_path / "t1t2-t1c.safetensors"
    save_checkpoint(create_translator("unet", inputs=("T1", "T2"), outputs=("T1c",), width=4, depth=2), path)
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    vols = {"a T2": subject.images["T2"], "b T1": subject.images["T1"], "SYNTHETIC T1 old": subject.images["T1"]}
    panel.volume_provider = vols.__getitem__
    panel.set_sources([("SYNTHETIC T1 old", "T1"), ("a T2", "T2"), ("b T1", "T1")])
    panel.add_model_file(path)
    qtbot.waitUntil(lambda: panel.spec_label.text().startswith("unet: T1+T2 -> T1c"), timeout=20000)
    assert panel.input_names() == {"T1": "b T1", "T2": "a T2"}  # by modality, acquired before synthetic
    results = []
    panel.translated.connect(lambda req, result: results.append(result))
    wait_job(qtbot, panel.run())
    assert messages == [] and results[0].volume.modality == "T1c"
    assert results[0].volume.provenance["input_modalities"] == ["T1", "T2"]


def test_input_picker_names_each_volumes_contrast_and_flags_the_wrong_one(qtbot):
    from napari_medtrans.qt.input_picker import InputPicker

    picker = InputPicker()
    qtbot.addWidget(picker)
    picker.set_sources([("FLAIR", "FLAIR"), ("T1", "T1"), ("T2", "T2"), ("scan", None)])
    picker.set_modalities(("T1",))
    assert picker.names() == {"T1": "T1"} and picker.contrast_text("T1") == "T1"
    picker._boxes["T1"].setCurrentText("T2")
    assert picker.contrast_text("T1") == "is T2, not T1"
    picker._boxes["T1"].setCurrentText("scan")
    assert picker.contrast_text("T1") == "contrast unknown"


def test_segment_comparison_refuses_a_real_target_of_another_contrast(qtbot, subject):
    from napari_medtrans.qt.segment_compare import CompareGroup

    group = CompareGroup()
    qtbot.addWidget(group)
    t2 = subject.images["T2"]
    vols = {"T1": subject.images["T1"], "PD": subject.images["PD"], "T2": t2,
            "synth T2": t2.derive(t2.data * 0.9, synthetic=True), "labels": subject.labels}
    group.set_sources(["T1", "PD", "T2", "synth T2"], ["labels"])
    for key, name in (("source", "T1"), ("real", "PD"), ("synthetic", "synth T2"), ("truth", "labels")):
        group.boxes[key].setCurrentText(name)
    with pytest.raises(ModalityMismatchError, match="PD"):
        group.picks(vols.__getitem__)
    group.boxes["real"].setCurrentText("T2")
    images, _truth, _labels = group.picks(vols.__getitem__)
    assert set(images) == {"T1 (source)", "T2 (real)", "synth T2 (synthetic)"}


def test_translate_panel_refuses_a_mislabelled_input_unless_the_override_is_ticked(qtbot, subject, tiny_model,
                                                                                     messages):
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    vols = {"T1 s3": subject.images["T1"], "T2 s3": subject.images["T2"]}
    panel.volume_provider = vols.__getitem__
    panel.set_sources([("T2 s3", "T2"), ("T1 s3", "T1")])
    panel.add_model_file(tiny_model)
    qtbot.waitUntil(lambda: panel.spec_label.text().startswith("unet"), timeout=20000)
    panel.inputs._boxes["T1"].setCurrentText("T2 s3")
    assert panel.inputs.contrast_text("T1") == "is T2, not T1"
    results = []
    panel.translated.connect(lambda req, result: results.append(result))
    wait_job(qtbot, panel.run())
    qtbot.waitUntil(lambda: bool(messages), timeout=20000)
    assert results == [] and "is T2" in messages[0] and "expects T1" in messages[0]
    panel.override_box.setChecked(True)
    wait_job(qtbot, panel.run())
    qtbot.waitUntil(lambda: bool(results), timeout=20000)
    assert results[0].volume.provenance["modality_override"][0]["labelled"] == "T2"


def test_a_two_way_model_offers_both_directions_and_runs_the_reverse(qtbot, tmp_path, subject, messages):
    """Issue 21 item 4: HiFi-Syn, DisDiff and CycleGAN checkpoints translate both ways; the list offers each
    direction the file has intensity statistics for, and the reverse one takes the T2 volume and makes a
    synthetic T1."""
    model = create_translator("cyclegan", preset="cpu", width=4, n_blocks=1)
    path = tmp_path / "two-way.safetensors"
    norm = {"scheme": "percentile", "inputs": {"T1": {"lo": 0.0, "hi": 600.0}},
            "outputs": {"T2": {"lo": 0.0, "hi": 500.0}}, "targets": "volume"}
    save_checkpoint(model, path, normalisation=norm)
    one_way = tmp_path / "no-stats.safetensors"
    save_checkpoint(model, one_way)
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    vols = {"T1 s3": subject.images["T1"], "T2 s3": subject.images["T2"]}
    panel.volume_provider = vols.__getitem__
    panel.set_sources([("T1 s3", "T1"), ("T2 s3", "T2")])
    panel.add_model_file(one_way)
    panel.add_model_file(path)
    labels = [panel.model_box.itemText(i) for i in range(panel.model_box.count())]
    assert "two-way.safetensors, T1 -> T2 (file)" in labels and "two-way.safetensors, T2 -> T1 (file)" in labels
    assert "no-stats.safetensors (file)" in labels and not any(t.startswith("no-stats.safetensors,") for t in labels)
    qtbot.waitUntil(lambda: panel.spec_label.text().startswith("cyclegan: T1 -> T2"), timeout=20000)
    panel.model_box.setCurrentIndex(labels.index("two-way.safetensors, T2 -> T1 (file)"))
    qtbot.waitUntil(lambda: panel.spec_label.text().startswith("cyclegan: T2 -> T1"), timeout=20000)
    assert panel.input_names() == {"T2": "T2 s3"} and panel.output_modalities() == ("T1",)
    results = []
    panel.translated.connect(lambda req, result: results.append(result))
    wait_job(qtbot, panel.run())
    assert messages == [] and results[0].volume.modality == "T1" and results[0].volume.synthetic
    assert results[0].volume.provenance["input_modalities"] == ["T2"]


def test_import_weights_from_the_translate_panel_lists_the_model(qtbot, tmp_path, tiny_model, messages, monkeypatch):
    """Issue 21 item 6: "Import weights..." copies a file into the store in a worker, says where it went, and the
    model list then offers it; a broken file gives a message that names it."""
    from qtpy.QtWidgets import QFileDialog

    panel = TranslatePanel()
    qtbot.addWidget(panel)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tiny_model), ""))
    job = panel.import_weights()
    wait_job(qtbot, job)
    assert messages == [] and "tiny-unet.safetensors is in the weights store" in panel.status.text()
    labels = [panel.model_box.itemText(i) for i in range(panel.model_box.count())]
    assert "tiny-unet.safetensors (weights store)" in labels
    missing = tmp_path / "gone.pt"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(missing), ""))
    wait_job(qtbot, panel.import_weights())
    assert messages and "gone.pt" in messages[-1]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    assert panel.import_weights() is None  # cancelled: nothing happens


def test_export_picks_what_was_just_made(qtbot):
    """Issue 21 item 5: Export once stayed on the first acquired image (FLAIR) after a translation."""
    from napari_medtrans.qt.export_panel import ExportPanel

    panel = ExportPanel()
    qtbot.addWidget(panel)
    panel.set_sources(["FLAIR", "T1", "T2"], [])
    panel.volume_box.setCurrentText("FLAIR")
    panel.set_sources(["SYNTHETIC T2", "FLAIR", "T1", "T2"], ["SYNTHETIC T2"])
    assert panel.volume_box.currentText() == "SYNTHETIC T2"  # the new synthetic volume is the pick
    panel.volume_box.setCurrentText("T1")
    panel.set_sources(["SYNTHETIC T2", "FLAIR", "T1", "T2"], ["SYNTHETIC T2"])
    assert panel.volume_box.currentText() == "T1"  # nothing new: the user's pick stays
    panel.set_sources(["SYNTHETIC T2 (2)", "SYNTHETIC T2", "FLAIR", "T2"], ["SYNTHETIC T2 (2)", "SYNTHETIC T2"])
    assert panel.volume_box.currentText() == "SYNTHETIC T2 (2)"


def test_a_shipped_model_given_by_a_relative_path_is_selected(qtbot, monkeypatch):
    """add_model_file once left the previous model selected when the file was a shipped one spelt another way."""
    from pathlib import Path

    from napari_medtrans.qt.translate_panel import TranslatePanel

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    panel = TranslatePanel()
    qtbot.addWidget(panel)
    panel.add_model_file("resources/models/edts-t1-t2.safetensors")
    assert Path(panel.model_box.currentData().value).resolve() == root / "resources/models/edts-t1-t2.safetensors"
    panel.add_model_file(root / "resources/models/demo-t1-t2.safetensors")
    assert Path(panel.model_box.currentData().value).name == "demo-t1-t2.safetensors"
