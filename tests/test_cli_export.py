"""`medtrans translate --format dicom` and `medtrans export`: synthetic DICOM series from the command line."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_medtrans.cli import main
from napari_medtrans.core.io import load, write_nifti
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.phantom import make_subject
from napari_medtrans.core.weights import sha256_file
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "unet.safetensors"
    save_checkpoint(create_translator("unet", width=4, depth=2), path)
    return path


@pytest.fixture(scope="module")
def dicom_t1(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    t1 = make_subject(8, shape=(32, 32, 10)).images["T1"]
    write_dicom_series(t1, root / "T1", series_description="T1 AX", patient_name="ROE^RICHARD",
                       patient_id="MRN-123")
    return root / "T1"


def headers(folder):
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def test_translate_dicom_input_to_dicom_series_in_its_study(dicom_t1, model, tmp_path, capsys):
    out = tmp_path / "t2_dicom"
    assert main(["translate", str(dicom_t1), "--model", str(model), "--format", "dicom", "--out", str(out),
                 "--device", "cpu"]) == 0
    src = load(dicom_t1)
    written = headers(out)
    assert len(written) == 10
    sha = sha256_file(model)
    for ds, source in zip(written, src.source.dicom_datasets):
        assert ds.StudyInstanceUID == src.source.study_instance_uid and ds.PatientID == "MRN-123"
        assert ds.SyntheticData == "YES" and ds.SeriesDescription.startswith("SYNTHETIC T2")
        assert "unet" in ds.DerivationDescription and sha in ds.DerivationDescription
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    back = load(out)
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-4)
    assert back.synthetic and back.modality == "T2"
    assert f"in study {src.source.study_instance_uid}" in capsys.readouterr().out


def test_translate_nifti_to_deidentified_dicom_and_bad_out(dicom_t1, model, tmp_path, capsys):
    nifti = write_nifti(load(dicom_t1), tmp_path / "t1.nii.gz")
    out = tmp_path / "anon"
    assert main(["translate", str(nifti), "--model", str(model), "--format", "dicom", "--out", str(out),
                 "--deidentify"]) == 0
    ds = headers(out)[0]
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == "ANONYMOUS"
    assert "in a new study" in capsys.readouterr().out
    assert main(["translate", str(nifti), "--model", str(model), "--format", "dicom",
                 "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "must be a folder" in capsys.readouterr().err
    assert main(["translate", str(nifti), "--model", str(model), "--out", str(tmp_path / "folder")]) == 2
    assert "--format dicom" in capsys.readouterr().err


def test_export_nifti_into_the_source_study(dicom_t1, model, tmp_path, capsys):
    t2 = tmp_path / "t2_synthetic.nii.gz"
    assert main(["translate", str(dicom_t1), "--model", str(model), "--out", str(t2)]) == 0
    out = tmp_path / "exported"
    assert main(["export", str(t2), str(out), "--source", str(dicom_t1), "--model", str(model)]) == 0
    captured = capsys.readouterr()
    assert "wrote 10 files" in captured.out and "warning" not in captured.err
    src = load(dicom_t1)
    ds = headers(out)[4]
    assert ds.StudyInstanceUID == src.source.study_instance_uid and str(ds.PatientName) == "ROE^RICHARD"
    assert ds.SyntheticData == "YES" and "by unet" in ds.DerivationDescription
    assert sha256_file(model) in ds.DerivationDescription
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.source.dicom_datasets[4].SOPInstanceUID
    np.testing.assert_allclose(load(out).affine, src.affine, atol=1e-4)


def synthetic_nifti(source, path, **provenance):
    """A synthetic T2 NIfTI made from ``source`` (a Volume read from DICOM), with ``provenance``."""
    syn = source.derive(source.data * 0.5 + 3.0, modality="T2", synthetic=True,
                        provenance={"method": "unet", "input_modalities": ["T1"], **provenance})
    return write_nifti(syn, path)


def test_export_errors_name_the_problem(dicom_t1, tmp_path, capsys):
    t1 = synthetic_nifti(load(dicom_t1), tmp_path / "t2_synthetic.nii.gz")
    assert main(["export", str(dicom_t1), str(tmp_path / "o")]) == 2
    assert "must be a .nii" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assert main(["export", str(t1), str(busy)]) == 2
    assert f"{busy}: folder is not empty" in capsys.readouterr().err
    write_dicom_series(make_subject(9, shape=(32, 32, 10)).images["T2"], tmp_path / "two",
                       series_description="T2", series_number=5)
    write_dicom_series(load(dicom_t1), tmp_path / "two", series_description="T1 copy", series_number=6)
    assert main(["export", str(t1), str(tmp_path / "o2"), "--source", str(tmp_path / "two")]) == 2
    assert "choose one" in capsys.readouterr().err


def test_export_is_listed_in_help(capsys):
    assert main([]) == 0
    assert "export a NIfTI volume as a synthetic DICOM series" in capsys.readouterr().out


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_export_refuses_an_acquired_volume_unless_asked(dicom_t1, tmp_path, capsys):
    t2 = write_nifti(load(dicom_t1, modality="T2"), tmp_path / "acquired_t2.nii.gz")  # not synthetic
    out = tmp_path / "out"
    assert main(["export", str(t2), str(out), "--source", str(dicom_t1)]) == 2
    err = capsys.readouterr().err
    assert "not marked synthetic" in err and "--allow-acquired" in err and "allow_non_synthetic" not in err
    assert str(t2) in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["export", str(t2), str(out), "--source", str(dicom_t1), "--allow-acquired"]) == 0
    ds = headers(out)[0]
    assert "SyntheticData" not in ds and not ds.SeriesDescription.upper().startswith("SYNTHETIC")
    assert "unknown method" not in ds.DerivationDescription and "re-exported" in ds.DerivationDescription
    # a synthetic volume from another tool is marked when the user says so, naming the method
    assert main(["export", str(t2), str(tmp_path / "marked"), "--synthetic"]) == 2
    assert "--synthetic needs --method" in capsys.readouterr().err
    assert main(["export", str(t2), str(tmp_path / "marked"), "--synthetic", "--method", "other-tool"]) == 0
    ds = headers(tmp_path / "marked")[0]
    assert ds.SyntheticData == "YES" and "other-tool" in ds.DerivationDescription


def test_export_refuses_an_error_map_unless_asked(dicom_t1, tmp_path, capsys):
    src = load(dicom_t1)
    error = src.derive(np.abs(src.data - src.data.mean()), modality="abs error", synthetic=True,
                       provenance={"method": "unet", "map": "abs error"})
    path = write_nifti(error, tmp_path / "t2_abs_error.nii.gz")
    assert main(["export", str(path), str(tmp_path / "out"), "--source", str(dicom_t1)]) == 2
    err = capsys.readouterr().err
    assert "map, not an MR image" in err and "--allow-map" in err and not (tmp_path / "out").exists()
    assert main(["export", str(path), str(tmp_path / "out"), "--source", str(dicom_t1), "--allow-map"]) == 0
    assert "map" in headers(tmp_path / "out")[0].SeriesDescription


def test_export_refuses_another_patients_study(dicom_t1, tmp_path, capsys):
    src = load(dicom_t1)
    t2 = synthetic_nifti(src, tmp_path / "t2_synthetic.nii.gz", input_patient_sha256=_sha("MRN-123"),
                         input_study_uid=src.source.study_instance_uid)
    if "input_patient_sha256" not in load(t2).provenance:
        pytest.skip("this checkout's NIfTI reader does not read the provenance back from the header")
    other = tmp_path / "other"
    write_dicom_series(make_subject(9, shape=(32, 32, 10)).images["T1"], other, series_description="T1",
                       patient_name="DOE^JOHN", patient_id="MRN-999")
    assert main(["export", str(t2), str(tmp_path / "out"), "--source", str(other)]) == 2
    err = capsys.readouterr().err
    assert "another patient" in err and "MRN-999" in err and _sha("MRN-123")[:12] in err
    assert "--allow-other-study" in err and not (tmp_path / "out").exists()
    assert main(["export", str(t2), str(tmp_path / "out"), "--source", str(other), "--allow-other-study"]) == 0
    assert headers(tmp_path / "out")[0].PatientID == "MRN-999"
    assert main(["export", str(t2), str(tmp_path / "own"), "--source", str(dicom_t1)]) == 0


def test_export_checks_the_source_like_load(dicom_t1, tmp_path, capsys):
    t2 = synthetic_nifti(load(dicom_t1), tmp_path / "t2_synthetic.nii.gz")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, path in enumerate(sorted(dicom_t1.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        if i == 4:
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.save_as(mixed / path.name)
    assert main(["export", str(t2), str(tmp_path / "out"), "--source", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert "mixes slice orientations" in err and not (tmp_path / "out").exists()
