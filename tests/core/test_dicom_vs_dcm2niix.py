"""Our DICOM geometry agrees with dcm2niix on the same series (affine to 1e-3 mm, identical voxel values).

dcm2niix may store the voxels in another index order (it flips rows, for instance). Two independent checks:
1. after reorienting both images to the closest canonical (RAS) index order with nibabel, the affines agree
   to 1e-3 mm and the arrays are equal;
2. the world coordinate of every one of our voxel centres, mapped through the inverse of dcm2niix's affine,
   lands on an integer voxel index (within 1e-3 mm) holding the same value.
"""

from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from napari_medtrans.core.io import load
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.core.volume import Volume

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix is not on PATH"),
]


def rot(ax_deg: float, ay_deg: float) -> np.ndarray:
    ax, ay = np.deg2rad([ax_deg, ay_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    return ry @ rx


GEOMETRIES = {
    "axial": np.eye(3),
    "sagittal": np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0.0]]),
    "coronal": np.array([[-1, 0, 0], [0, 0, -1], [0, -1, 0.0]]),
    "oblique-20x-20y": rot(20, 20),
}


def make_volume(direction: np.ndarray, shape=(28, 22, 9), spacing=(0.85, 1.3, 3.2)) -> Volume:
    aff = np.eye(4)
    aff[:3, :3] = direction @ np.diag(spacing)
    aff[:3, 3] = (-11.3, 24.6, -30.1)
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    # Asymmetric along every axis so that any flip or transpose changes the values.
    data = 3 * i + 0.7 * j**1.5 + 40 * k + 5 * np.sin(i * j / 7)
    return Volume(data.astype(np.float32), aff, modality="T1")


def dcm2niix(src, out_dir) -> nib.Nifti1Image:
    out_dir.mkdir()
    proc = subprocess.run(
        ["dcm2niix", "-z", "n", "-b", "n", "-f", "converted", "-o", str(out_dir), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    outputs = sorted(out_dir.glob("*.nii"))
    assert proc.returncode == 0 and len(outputs) == 1, proc.stdout + proc.stderr
    return nib.load(str(outputs[0]))


def assert_same_image(ours: Volume, theirs: nib.Nifti1Image) -> None:
    their_data = np.asarray(theirs.get_fdata(dtype=np.float64)).reshape(theirs.shape[:3])
    assert sorted(their_data.shape) == sorted(ours.shape)
    tol = 1e-5 * float(np.abs(their_data).max()) + 1e-4  # float32 rescale on our side

    # 1. Canonical index order on both sides.
    ours_c = nib.as_closest_canonical(nib.Nifti1Image(ours.data, ours.affine))
    theirs_c = nib.as_closest_canonical(nib.Nifti1Image(their_data, theirs.affine))
    np.testing.assert_allclose(ours_c.affine, theirs_c.affine, atol=1e-3)
    np.testing.assert_allclose(np.asarray(ours_c.dataobj), np.asarray(theirs_c.dataobj), atol=tol, rtol=0)

    # 2. World coordinates of every voxel centre.
    idx = np.indices(ours.shape).reshape(3, -1)
    world = ours.affine[:3, :3] @ idx + ours.affine[:3, 3:4]
    inv = np.linalg.inv(theirs.affine)
    their_idx = inv[:3, :3] @ world + inv[:3, 3:4]
    rounded = np.rint(their_idx)
    mm_off = np.linalg.norm(theirs.affine[:3, :3] @ (their_idx - rounded), axis=0)
    assert mm_off.max() < 1e-3
    r = rounded.astype(int)
    assert (r >= 0).all() and all((r[a] < their_data.shape[a]).all() for a in range(3))
    np.testing.assert_allclose(ours.data.reshape(-1), their_data[r[0], r[1], r[2]], atol=tol, rtol=0)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_single_frame_series_matches_dcm2niix(tmp_path, name):
    vol = make_volume(GEOMETRIES[name])
    write_dicom_series(vol, tmp_path / "dicom", series_description=f"T1 {name}")
    ours = load(tmp_path / "dicom")
    assert_same_image(ours, dcm2niix(tmp_path / "dicom", tmp_path / "nii"))
    # And both agree with the volume that was written.
    np.testing.assert_allclose(
        nib.as_closest_canonical(nib.Nifti1Image(ours.data, ours.affine)).affine,
        nib.as_closest_canonical(nib.Nifti1Image(vol.data, vol.affine)).affine,
        atol=1e-3,
    )


def test_enhanced_mr_matches_dcm2niix(tmp_path):
    vol = make_volume(GEOMETRIES["oblique-20x-20y"])
    write_dicom_series(vol, tmp_path / "dicom", series_description="T1 enhanced", enhanced=True)
    assert_same_image(load(tmp_path / "dicom"), dcm2niix(tmp_path / "dicom", tmp_path / "nii"))


def test_float_data_with_rescale_matches_dcm2niix(tmp_path):
    vol = make_volume(GEOMETRIES["axial"])
    vol = vol.derive(vol.data / 7.3 - 12.0)  # signed, non-integer: int16 with a non-trivial RescaleSlope
    write_dicom_series(vol, tmp_path / "dicom", series_description="T1 rescaled")
    assert_same_image(load(tmp_path / "dicom"), dcm2niix(tmp_path / "dicom", tmp_path / "nii"))
