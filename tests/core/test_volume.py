"""Volume: geometry is validated up front and kept through derivation."""

import numpy as np
import pytest

from napari_medtrans.core.errors import GeometryError, InvalidVolumeError
from napari_medtrans.core.volume import SourceInfo, Volume, normalise_modality


def _affine(spacing=(1.0, 2.0, 3.0)):
    a = np.diag(list(spacing) + [1.0])
    a[:3, 3] = [-10, 20, 5]
    return a


def test_derive_keeps_affine_and_marks_synthetic():
    v = Volume(np.random.rand(4, 5, 6), _affine(), modality="t1w", source=SourceInfo(kind="nifti", path="/x/t1.nii"))
    assert v.modality == "T1"
    s = v.derive(np.zeros((4, 5, 6)), modality="T2", synthetic=True, provenance={"method": "unet"})
    assert s.synthetic and not v.synthetic
    assert np.array_equal(s.affine, v.affine) and s.affine is not v.affine
    assert s.modality == "T2" and s.provenance["method"] == "unet"
    assert s.spacing == pytest.approx((1.0, 2.0, 3.0))
    assert s.orientation == "RAS"
    assert "synthetic" in repr(s)


def test_derive_rejects_other_shape():
    v = Volume(np.zeros((4, 5, 6)), _affine(), source=SourceInfo(path="/data/a.nii.gz"))
    with pytest.raises(InvalidVolumeError, match="a.nii.gz"):
        v.derive(np.zeros((4, 5, 7)))


@pytest.mark.parametrize("shape", [(5, 5), (2, 3, 4, 5)])
def test_not_3d_is_refused_with_path(shape):
    with pytest.raises(InvalidVolumeError, match=r"/data/b\.nii.*3D"):
        Volume(np.zeros(shape), np.eye(4), source=SourceInfo(path="/data/b.nii"))


def test_singular_and_nan_affines_are_refused():
    a = np.eye(4)
    a[2, 2] = 0
    with pytest.raises(GeometryError, match="singular"):
        Volume(np.zeros((2, 2, 2)), a)
    a = np.eye(4)
    a[0, 3] = np.nan
    with pytest.raises(GeometryError, match="NaN"):
        Volume(np.zeros((2, 2, 2)), a)


def test_check_finite_names_file_and_count():
    d = np.zeros((3, 3, 3))
    d[0, 0, 0] = np.nan
    v = Volume(d, np.eye(4), source=SourceInfo(path="/data/c.nii"))
    with pytest.raises(InvalidVolumeError, match=r"/data/c\.nii: volume contains 1 NaN"):
        v.check_finite()


def test_oblique_orientation_code():
    th = np.deg2rad(30)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = -rot  # flips x and z roughly -> L?I
    v = Volume(np.zeros((2, 2, 2)), a)
    assert len(v.orientation) == 3
    assert v.same_grid(Volume(np.ones((2, 2, 2)), a.copy()))
    assert not v.same_grid(Volume(np.ones((2, 2, 3)), a.copy()))


def test_modality_aliases():
    assert normalise_modality("T1-Gd") == "T1c"
    assert normalise_modality("t2_flair") == "FLAIR"
    assert normalise_modality("DWI") == "DWI"
