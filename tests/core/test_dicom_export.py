"""DICOM export of synthetic volumes: study membership, synthetic marking, geometry, references, de-identification.

External checks: dciodvfy (no errors; the 2022 dicom3tools does not know SyntheticData (0008,001C) and reports
exactly that tag as an unknown attribute, which is ignored) and dcm2niix (the same geometry and values back).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_medtrans.core.errors import ExportError, InvalidVolumeError, MultipleSeriesError
from napari_medtrans.core.io import load, read_nifti, write_nifti
from napari_medtrans.core.io.dicom_export import export_dicom_series
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.core.volume import Volume

SHA = "0123456789abcdef" * 4
PATIENT = dict(patient_name="DOE^JANE", patient_id="PID-4711")


@pytest.fixture(autouse=True)
def strict_pydicom(monkeypatch):
    """Values that break their VR (too long, wrong characters) raise while writing instead of passing silently."""
    from pydicom import config

    monkeypatch.setattr(config.settings, "writing_validation_mode", config.RAISE)


def make_volume(shape=(24, 20, 8), spacing=(1.1, 1.3, 3.0), direction=None, offset=(-12.0, 20.0, -30.0)):
    aff = np.eye(4)
    aff[:3, :3] = (np.eye(3) if direction is None else direction) @ np.diag(spacing)
    aff[:3, 3] = offset
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    data = 3 * i + 0.7 * j**1.5 + 40 * k + 5 * np.sin(i * j / 7)
    return Volume(data.astype(np.float32), aff, modality="T1")


def oblique() -> np.ndarray:
    a, b = np.deg2rad([20.0, -15.0])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


def dicom_source(tmp_path, volume=None, name="src", **kw):
    """A T1 DICOM series on disk and the Volume read back from it (with its headers)."""
    volume = make_volume() if volume is None else volume
    write_dicom_series(volume, tmp_path / name, series_description="T1 AX", **PATIENT, **kw)
    return load(tmp_path / name)


def synthetic_from(source: Volume) -> Volume:
    data = 1000.0 - source.data * 0.37 + 0.25  # float, not integer: stored with a rescale slope
    return source.derive(data, modality="T2", synthetic=True,
                         provenance={"method": "edts-trans", "checkpoint_sha256": SHA, "input_modalities": ["T1"]})


def dciodvfy_errors(path) -> list[str]:
    proc = subprocess.run(["dciodvfy", os.fspath(path)], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
    return [ln for ln in lines if "(0x0008,0x001c)" not in ln]


def test_series_joins_source_study_marked_synthetic_with_references(tmp_path):
    src = dicom_source(tmp_path)
    syn = synthetic_from(src)
    result = export_dicom_series(syn, tmp_path / "out")

    assert [p.name for p in result.files] == [f"IM{k:05d}.dcm" for k in range(1, 9)]
    assert not result.new_study and result.geometry_matches_source and result.n_referenced == 8
    headers = [pydicom.dcmread(p) for p in result.files]
    source_headers = src.source.dicom_datasets
    for k, ds in enumerate(headers):
        assert ds.StudyInstanceUID == src.source.study_instance_uid == result.study_instance_uid
        assert ds.SeriesInstanceUID == result.series_instance_uid != src.source.series_instance_uid
        assert ds.FrameOfReferenceUID == source_headers[0].FrameOfReferenceUID
        assert (str(ds.PatientName), ds.PatientID) == ("DOE^JANE", "PID-4711")
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.SyntheticData == "YES"
        assert ds.SeriesDescription.startswith("SYNTHETIC") and "T2" in ds.SeriesDescription
        assert "edts-trans" in ds.DerivationDescription and SHA in ds.DerivationDescription
        # the slice at the same position in the source is the one referenced
        (ref,) = ds.SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == source_headers[k].SOPInstanceUID
        assert ref.ReferencedSOPClassUID == source_headers[k].SOPClassUID
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"

    back = load(tmp_path / "out")
    assert back.synthetic
    np.testing.assert_allclose(back.affine, syn.affine, atol=1e-4)
    np.testing.assert_allclose(back.data, syn.data, atol=2e-5 * np.abs(syn.data).max())


@pytest.mark.external
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not on PATH")
@pytest.mark.parametrize("deidentify", [False, True])
def test_export_passes_dciodvfy(tmp_path, deidentify):
    syn = synthetic_from(dicom_source(tmp_path, make_volume(direction=oblique())))
    result = export_dicom_series(syn, tmp_path / "out", deidentify=deidentify)
    for path in (result.files[0], result.files[-1]):
        assert dciodvfy_errors(path) == []


@pytest.mark.external
@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix is not on PATH")
@pytest.mark.parametrize("direction", [None, "oblique"])
def test_dcm2niix_reads_back_the_same_geometry(tmp_path, direction):
    syn = synthetic_from(dicom_source(tmp_path, make_volume(direction=oblique() if direction else None)))
    export_dicom_series(syn, tmp_path / "out")
    (tmp_path / "nii").mkdir()
    proc = subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "conv", "-o", str(tmp_path / "nii"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    outputs = sorted((tmp_path / "nii").glob("*.nii"))
    assert proc.returncode == 0 and len(outputs) == 1, proc.stdout + proc.stderr
    theirs = nib.load(str(outputs[0]))
    ours_c = nib.as_closest_canonical(nib.Nifti1Image(syn.data, syn.affine))
    theirs_c = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(theirs.dataobj, dtype=np.float64)
                                                        .reshape(theirs.shape[:3]), theirs.affine))
    np.testing.assert_allclose(theirs_c.affine, ours_c.affine, atol=1e-3)
    np.testing.assert_allclose(np.asarray(theirs_c.dataobj), np.asarray(ours_c.dataobj),
                               atol=2e-5 * np.abs(syn.data).max() + 1e-3)


def test_deidentify_removes_identifiers_and_remaps_uids(tmp_path):
    src = dicom_source(tmp_path)
    syn = synthetic_from(src)
    a = export_dicom_series(syn, tmp_path / "a", deidentify=True, uid_salt="project-7")
    b = export_dicom_series(syn, tmp_path / "b", deidentify=True, uid_salt="project-7")
    c = export_dicom_series(syn, tmp_path / "c", deidentify=True)
    source_uids = {str(ds.SOPInstanceUID) for ds in src.source.dicom_datasets}
    source_uids |= {src.source.study_instance_uid, str(src.source.dicom_datasets[0].FrameOfReferenceUID)}
    for path in a.files:
        raw = path.read_bytes()
        for secret in (b"DOE", b"JANE", b"PID-4711"):
            assert secret not in raw
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == "ANONYMOUS" and ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.StudyDate == "" and "SeriesDate" not in ds and "ContentDate" not in ds
        used = {ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.SOPInstanceUID}
        used |= {r.ReferencedSOPInstanceUID for r in ds.SourceImageSequence}
        assert not used & source_uids
        assert ds.SyntheticData == "YES"  # still unmistakably synthetic
    assert a.study_instance_uid == b.study_instance_uid != c.study_instance_uid
    assert a.deidentified


def test_nifti_source_makes_a_new_study(tmp_path):
    path = write_nifti(make_volume(), tmp_path / "t1.nii.gz")
    src = read_nifti(path)
    result = export_dicom_series(synthetic_from(src), tmp_path / "out", patient_id="STUDY-SUBJ-01")
    ds = pydicom.dcmread(result.files[0])
    assert result.new_study and not result.geometry_matches_source and result.n_referenced == 0
    assert ds.PatientID == "STUDY-SUBJ-01" and "SourceImageSequence" not in ds
    assert ds.SyntheticData == "YES"
    np.testing.assert_allclose(load(tmp_path / "out").affine, src.affine, atol=1e-4)


def test_source_folder_for_a_volume_read_from_nifti(tmp_path):
    src = dicom_source(tmp_path)
    nifti = read_nifti(write_nifti(src, tmp_path / "t1.nii.gz"))
    result = export_dicom_series(synthetic_from(nifti), tmp_path / "out", source=tmp_path / "src")
    ds = pydicom.dcmread(result.files[2])
    assert ds.StudyInstanceUID == src.source.study_instance_uid and result.geometry_matches_source
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.source.dicom_datasets[2].SOPInstanceUID

    far = nifti.derive(nifti.data)
    far.affine[:3, 3] += (0.0, 0.0, 500.0)  # half a metre above the source: nothing overlaps
    away = export_dicom_series(far, tmp_path / "far", source=src, synthetic=True)
    assert not away.geometry_matches_source and away.n_referenced == 1  # the nearest (top) source slice


def test_reformatted_volume_references_every_source_slice_it_crosses(tmp_path):
    src = dicom_source(tmp_path)
    sagittal = Volume(src.data.transpose(2, 1, 0).copy(), src.affine[:, [2, 1, 0, 3]], modality="T2",
                      synthetic=True)  # slices along the source's i axis: each crosses all 8 axial slices
    result = export_dicom_series(sagittal, tmp_path / "out", source=src)
    ds = pydicom.dcmread(result.files[5])
    assert len(ds.SourceImageSequence) == 8 and result.geometry_matches_source


def test_enhanced_source_references_frames(tmp_path):
    src = dicom_source(tmp_path, enhanced=True)
    result = export_dicom_series(synthetic_from(src), tmp_path / "out")
    refs = [pydicom.dcmread(p).SourceImageSequence[0] for p in result.files]
    assert [int(r.ReferencedFrameNumber) for r in refs] == list(range(1, 9))
    assert len({r.ReferencedSOPInstanceUID for r in refs}) == 1


def test_refuses_bad_output_and_ambiguous_sources(tmp_path):
    src = dicom_source(tmp_path)
    syn = synthetic_from(src)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "old.dcm").write_bytes(b"x")
    with pytest.raises(ExportError, match="busy: folder is not empty"):
        export_dicom_series(syn, tmp_path / "busy")
    bad = syn.derive(np.where(syn.data > syn.data.mean(), np.nan, syn.data))
    with pytest.raises(InvalidVolumeError, match="NaN"):
        export_dicom_series(bad, tmp_path / "nan")
    write_dicom_series(make_volume(), tmp_path / "two", series_description="A", **PATIENT)
    write_dicom_series(make_volume(), tmp_path / "two", series_description="B", series_number=2, **PATIENT)
    with pytest.raises(MultipleSeriesError, match="2 DICOM series"):
        export_dicom_series(syn, tmp_path / "x", source=tmp_path / "two")
    uid = pydicom.dcmread(next((tmp_path / "two").glob("S002_*.dcm"))).SeriesInstanceUID
    result = export_dicom_series(syn, tmp_path / "y", source=tmp_path / "two", source_series_uid=uid)
    assert result.n_referenced == 8


def test_acquired_volume_is_re_exported_without_synthetic_marks(tmp_path):
    src = dicom_source(tmp_path)
    result = export_dicom_series(src, tmp_path / "out")
    ds = pydicom.dcmread(result.files[0])
    assert "SyntheticData" not in ds and not ds.SeriesDescription.startswith("SYNTHETIC")
    assert "re-exported" in ds.DerivationDescription and list(ds.ImageType)[0] == "DERIVED"
    assert not load(tmp_path / "out").synthetic
