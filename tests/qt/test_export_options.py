"""The export panel passes the export's refusals and the options that lift them through (issue 18, item 3).

Runs with QT_QPA_PLATFORM=offscreen as well as under xvfb.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_medtrans.core.errors import ExportError
from napari_medtrans.core.io import load
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.phantom import make_subject
from napari_medtrans.qt.export_panel import ExportPanel, export_volume


@pytest.fixture
def source(tmp_path):
    write_dicom_series(make_subject(2, shape=(24, 24, 6)).images["T1"], tmp_path / "src", series_description="T1",
                       patient_id="P-9")
    return load(tmp_path / "src")


def test_job_refuses_acquired_and_maps_naming_the_checkbox(source, tmp_path):
    with pytest.raises(ExportError, match="not marked synthetic") as info:
        export_volume(None, source, "dicom", str(tmp_path / "a"), None, False)
    assert "Export acquired images and maps" in str(info.value) and "allow_non_synthetic" not in str(info.value)
    error = source.derive(np.abs(source.data - 1.0), modality="abs error", synthetic=True,
                          provenance={"map": "abs error", "method": "unet"})
    with pytest.raises(ExportError, match="map, not an MR image"):
        export_volume(None, error, "dicom", str(tmp_path / "m"), None, False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "m").exists()
    paths = export_volume(None, source, "dicom", str(tmp_path / "a"), None, False, allow_non_synthetic=True)
    assert len(paths) == 6 and "SyntheticData" not in pydicom.dcmread(paths[0])
    paths = export_volume(None, error, "dicom", str(tmp_path / "m"), None, False, allow_non_synthetic=True)
    assert "map" in pydicom.dcmread(paths[0]).SeriesDescription


def test_job_refuses_another_patients_study_unless_ticked(source, tmp_path):
    import hashlib

    syn = source.derive(source.data * 0.5, modality="T2", synthetic=True,
                        provenance={"method": "unet", "input_patient_sha256": hashlib.sha256(b"P-1").hexdigest()})
    with pytest.raises(ExportError, match="another patient") as info:
        export_volume(None, syn, "dicom", str(tmp_path / "o"), None, False)
    assert "Allow a source study of another patient" in str(info.value)
    paths = export_volume(None, syn, "dicom", str(tmp_path / "o"), None, False, allow_other_study=True)
    assert pydicom.dcmread(paths[0]).PatientID == "P-9"


def test_panel_passes_its_checkboxes(qtbot, source, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from napari_medtrans.qt import export_panel

    seen = {}
    signal = SimpleNamespace(connect=lambda slot: None)
    fake_job = SimpleNamespace(running=False, succeeded=signal, failed=signal, finished=signal)

    def fake_start(fn, *args, **kw):
        seen.update(args=args, kw=kw)
        return fake_job

    monkeypatch.setattr(export_panel, "start_job", fake_start)
    panel = ExportPanel()
    qtbot.addWidget(panel)
    panel.volume_provider = {"T1": source}.__getitem__
    panel.set_sources(["T1"])
    panel.out_edit.setText(str(tmp_path / "out"))
    panel.allow_non_synthetic_box.setChecked(True)
    panel.export()
    assert seen["kw"]["allow_non_synthetic"] is True and seen["kw"]["allow_other_study"] is False
    panel.format_box.setCurrentIndex(panel.format_box.findData("nifti"))
    assert not panel.allow_non_synthetic_box.isEnabled() and not panel.allow_other_study_box.isEnabled()
