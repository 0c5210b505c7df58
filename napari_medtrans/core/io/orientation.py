"""Orientation helpers shared by the DICOM reader, the DICOM writers and export: small pure functions.

Conventions
-----------
DICOM positions are in the patient LPS frame (+x Left, +y Posterior, +z Superior); a Volume's affine maps
voxel indices to RAS (+x Right, +y Anterior, +z Superior). The two differ by negating x and y, which for a
4x4 affine means negating its first two rows (:func:`lps_to_ras`, its own inverse).

For a DICOM slice, ImageOrientationPatient holds two direction cosines: the *row* cosine (the direction in
which the column index grows along a row, our ``i`` axis) and the *column* cosine (the direction in which
the row index grows, our ``j`` axis). PixelSpacing is ``[row spacing, column spacing]``, i.e. the spacing
along ``j`` first and along ``i`` second. The slice normal is ``row x column``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "LPS_TO_RAS",
    "lps_to_ras",
    "ras_to_lps",
    "slice_normal",
    "affine_from_dicom",
    "dicom_geometry_from_affine",
    "axcodes",
]

#: Multiplying an LPS affine on the left by this gives the RAS affine (and vice versa).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """Convert a 4x4 voxel-to-LPS affine into a voxel-to-RAS affine (negate the first two rows).

    Parameters
    ----------
    affine : array-like, shape (4, 4)
        Voxel index to DICOM patient (LPS) millimetres.

    Returns
    -------
    numpy.ndarray
        A new float64 4x4 array mapping voxel indices to RAS millimetres.
    """
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """Convert a voxel-to-RAS affine into a voxel-to-LPS affine (the same operation as :func:`lps_to_ras`)."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def slice_normal(iop: Sequence[float]) -> np.ndarray:
    """Unit normal of a slice, the cross product of the row and column cosines of ImageOrientationPatient.

    Parameters
    ----------
    iop : sequence of 6 floats
        ImageOrientationPatient: row cosine (3 values) then column cosine (3 values).

    Returns
    -------
    numpy.ndarray
        The unit normal in the same (LPS) frame.

    Raises
    ------
    ValueError
        When ``iop`` does not hold 6 finite numbers or its two cosines are parallel.
    """
    iop = np.asarray(iop, dtype=np.float64).ravel()
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise ValueError(f'Argument "iop" should hold 6 finite numbers, got {iop.tolist()}.')
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise ValueError(f'Argument "iop" has parallel or zero direction cosines: {iop.tolist()}.')
    return n / norm


def affine_from_dicom(
    ipp_first: Sequence[float],
    iop: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_positions: Sequence[Sequence[float]] | None = None,
    slice_step: float | None = None,
    *,
    ras: bool = True,
) -> np.ndarray:
    """Build the 4x4 voxel-to-patient affine of a stack of DICOM slices (oblique stacks included).

    Parameters
    ----------
    ipp_first : sequence of 3 floats
        ImagePositionPatient of the first slice (k = 0): the centre of its first transmitted pixel.
    iop : sequence of 6 floats
        ImageOrientationPatient (row cosine, column cosine).
    pixel_spacing : sequence of 2 floats
        PixelSpacing, ``[row spacing, column spacing]`` in mm.
    slice_positions : sequence of 3-vectors, optional
        ImagePositionPatient of every slice in k order. With two or more, the k column of the affine is
        ``(last - first) / (n - 1)``, which keeps a sheared (gantry-tilted) stack exact.
    slice_step : float, optional
        Used when fewer than two positions are given: the k column is ``slice_step * normal``.
        Defaults to 1.0.
    ras : bool
        Return the RAS affine (default); ``False`` returns the DICOM LPS affine.

    Returns
    -------
    numpy.ndarray
        The 4x4 float64 affine mapping ``(i, j, k)`` (i = column, j = row, k = slice) to mm.
    """
    iop = np.asarray(iop, dtype=np.float64).ravel()
    normal = slice_normal(iop)
    ps = np.asarray(pixel_spacing, dtype=np.float64).ravel()
    if ps.shape != (2,) or not np.all(ps > 0):
        raise ValueError(f'Argument "pixel_spacing" should hold 2 positive numbers, got {ps.tolist()}.')
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] * ps[1]
    aff[:3, 1] = iop[3:] * ps[0]
    aff[:3, 3] = np.asarray(ipp_first, dtype=np.float64).ravel()
    positions = None if slice_positions is None else np.asarray(slice_positions, dtype=np.float64)
    if positions is not None and len(positions) >= 2:
        aff[:3, 2] = (positions[-1] - positions[0]) / (len(positions) - 1)
    else:
        step = 1.0 if slice_step is None else float(slice_step)
        aff[:3, 2] = normal * step
    return lps_to_ras(aff) if ras else aff


def dicom_geometry_from_affine(affine_ras: np.ndarray, n_slices: int, *, atol: float = 1e-4) -> dict:
    """The per-slice DICOM geometry that reproduces a Volume's affine (the inverse of :func:`affine_from_dicom`).

    Parameters
    ----------
    affine_ras : array-like, shape (4, 4)
        Voxel-to-RAS affine.
    n_slices : int
        Number of slices along k.
    atol : float
        Tolerance on the cosine between the i and j axes (DICOM cannot store skewed in-plane axes).

    Returns
    -------
    dict
        ``iop`` (6 floats), ``pixel_spacing`` ([row, column] spacing), ``positions`` (n_slices x 3 LPS),
        ``normal`` (unit LPS normal), ``slice_spacing`` (distance between slices along the normal, > 0),
        ``slice_locations`` (position of each slice along the normal).

    Raises
    ------
    ValueError
        When the in-plane axes are not perpendicular, or the k axis lies in the slice plane.
    """
    lps = ras_to_lps(affine_ras)
    col_i, col_j, col_k = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    si, sj = float(np.linalg.norm(col_i)), float(np.linalg.norm(col_j))
    if si <= 0 or sj <= 0:
        raise ValueError("affine has a zero voxel size along i or j")
    row_cos, col_cos = col_i / si, col_j / sj
    if abs(float(row_cos @ col_cos)) > atol:
        raise ValueError(
            f"affine's i and j axes are not perpendicular (cosine {float(row_cos @ col_cos):.2g}); "
            "DICOM cannot store skewed in-plane axes"
        )
    normal = np.cross(row_cos, col_cos)
    dk = float(col_k @ normal)
    if abs(dk) < 1e-6 * max(float(np.linalg.norm(col_k)), 1e-12):
        raise ValueError("affine's k axis lies in the slice plane; slices cannot be stacked")
    positions = lps[:3, 3][None, :] + np.arange(int(n_slices))[:, None] * col_k[None, :]
    return {
        "iop": [*row_cos.tolist(), *col_cos.tolist()],
        "pixel_spacing": [sj, si],
        "positions": positions,
        "normal": normal,
        "slice_spacing": abs(dk),
        "slice_locations": positions @ normal,
    }


def axcodes(affine: np.ndarray) -> str:
    """Three-letter orientation code of an RAS affine's voxel axes, e.g. "RAS", "LPS", "LIP" (nibabel)."""
    from nibabel.orientations import aff2axcodes

    return "".join(aff2axcodes(np.asarray(affine, dtype=np.float64)))
