"""NIfTI reading and writing: geometry and data survive, bad files raise errors that name the file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_medtrans.core.errors import GeometryError, InvalidVolumeError, VolumeReadError
from napari_medtrans.core.io import load, read_nifti, save, write_nifti
from napari_medtrans.core.volume import Volume


def oblique_affine() -> np.ndarray:
    a = np.deg2rad(17)
    r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = r @ np.diag([0.8, 1.1, 2.5])
    aff[:3, 3] = [-90.5, 12.25, -40.0]
    return aff


def volume(shape=(12, 10, 6), **kw) -> Volume:
    data = np.random.default_rng(0).normal(100, 30, shape).astype(np.float32)
    return Volume(data, oblique_affine(), **kw)


@pytest.mark.parametrize("name", ["sub-01_T2w.nii.gz", "flair.nii"])
def test_round_trip_keeps_affine_and_data(tmp_path, name):
    vol = volume(modality="T2")
    path = save(vol, tmp_path / name)
    back = load(path)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    assert back.source.kind == "nifti" and back.source.path == str(path)
    assert back.synthetic is False
    # The header this tool wrote says T2: it outranks the file name ("flair.nii").
    assert back.modality == "T2" and back.modality_evidence == "header"


def test_synthetic_mark_in_descrip_and_read_back(tmp_path):
    vol = volume(modality="T2", synthetic=True, provenance={"method": "edts-trans"})
    path = write_nifti(vol, tmp_path / "out.nii.gz")
    descrip = nib.load(str(path)).header["descrip"].tobytes().decode().rstrip("\x00")
    assert descrip.startswith("SYNTHETIC") and "T2" in descrip and "edts-trans" in descrip
    back = read_nifti(path)
    assert back.synthetic is True  # the mark survives a round trip
    assert back.modality == "T2"  # from the description when the file name says nothing
    real = write_nifti(volume(modality="T1"), tmp_path / "real.nii.gz")
    assert not nib.load(str(real)).header["descrip"].tobytes().decode().startswith("SYNTHETIC")
    assert read_nifti(real).synthetic is False


def test_nifti_written_atomically_and_suffix_checked(tmp_path):
    write_nifti(volume(), tmp_path / "a.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]
    with pytest.raises(ValueError, match="nii"):
        write_nifti(volume(), tmp_path / "a.img")


def _save_raw(path, data, affine):
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(None)
    nib.save(img, str(path))
    return path


def test_singular_affine_raises_geometry_error(tmp_path):
    # nibabel refuses to write a singular affine, so patch the header bytes: qform_code (offset 252) = 0,
    # srow_z (offset 312, 4 float32) = 0, leaving a sform whose third axis has zero length.
    path = _save_raw(tmp_path / "flat.nii", np.zeros((4, 4, 4), np.float32), np.eye(4))
    raw = bytearray(path.read_bytes())
    raw[252:254] = np.int16(0).tobytes()
    raw[312:328] = np.zeros(4, np.float32).tobytes()
    path.write_bytes(bytes(raw))
    assert np.linalg.det(nib.load(str(path)).affine[:3, :3]) == 0
    with pytest.raises(GeometryError, match="singular") as err:
        load(path)
    assert str(path) in str(err.value)


def test_nan_voxels_raise_invalid_volume(tmp_path):
    data = np.ones((5, 5, 5), np.float32)
    data[1, 2, 3] = np.nan
    path = _save_raw(tmp_path / "nan.nii", data, np.eye(4))
    with pytest.raises(InvalidVolumeError, match="1 NaN") as err:
        load(path)
    assert str(path) in str(err.value)


def test_2d_and_true_4d_refused_single_volume_4d_squeezed(tmp_path):
    p2 = _save_raw(tmp_path / "slice.nii.gz", np.ones((6, 7), np.float32), np.eye(4))
    with pytest.raises(InvalidVolumeError, match="2D") as err:
        load(p2)
    assert str(p2) in str(err.value)
    p4 = _save_raw(tmp_path / "fmri.nii.gz", np.ones((6, 7, 5, 3), np.float32), np.eye(4))
    with pytest.raises(InvalidVolumeError, match="4D") as err:
        load(p4)
    assert str(p4) in str(err.value)
    p41 = _save_raw(tmp_path / "one.nii.gz", np.arange(6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5, 1), np.eye(4))
    vol = load(p41)
    assert vol.shape == (6, 7, 5) and vol.data[5, 6, 4] == 6 * 7 * 5 - 1


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_truncated_file_raises_volume_read_error(tmp_path, name):
    path = save(volume(shape=(20, 20, 20)), tmp_path / name)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeReadError) as err:
        load(path)
    assert str(path) in str(err.value)


def test_garbage_with_nifti_name_raises(tmp_path):
    path = tmp_path / "fake.nii.gz"
    path.write_bytes(b"this is not gzip at all" * 20)
    with pytest.raises(VolumeReadError) as err:
        load(path)
    assert str(path) in str(err.value)


def test_synthetic_mark_and_method_survive_a_round_trip(tmp_path):
    import numpy as np

    from napari_medtrans.core.io import read_nifti, write_nifti
    from napari_medtrans.core.volume import Volume

    v = Volume(np.random.rand(4, 4, 3), np.eye(4), modality="T2", synthetic=True, provenance={"method": "edts-trans"})
    back = read_nifti(write_nifti(v, tmp_path / "s.nii.gz"))
    assert back.synthetic and back.modality == "T2" and back.provenance["method"] == "edts-trans"
    plain = read_nifti(write_nifti(Volume(np.ones((2, 2, 2)), np.eye(4)), tmp_path / "p.nii"))
    assert not plain.synthetic and "method" not in plain.provenance
