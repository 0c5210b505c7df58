"""Pixels for the viewer, without Qt: display orientation, slices, window/level, overlay colours.

Volumes are shown in radiological convention after a reorientation to RAS that only permutes and flips axes
(numpy views, no resampling), so a synthetic volume filled in place while a translation runs shows its new
slices at once. Window and level are shared between linked panes in *normalised* units: 0 and 1 are the
1st and 99th intensity percentiles of a pane's reference volume (the acquired volume of the same contrast
when one is loaded, else the volume itself), so one setting suits a T1 and a T2 side by side.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "PLANES",
    "PRESETS",
    "DisplayVolume",
    "robust_range",
    "window_to_uint8",
    "blend_overlay",
    "colour_lut",
]

#: Display planes and, for each, the RAS axis held fixed.
PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}

#: Window/level presets as (level, width) in normalised units.
PRESETS = {
    "Default": (0.5, 1.0),
    "High contrast": (0.5, 0.6),
    "Bright": (0.35, 0.8),
    "Dark": (0.65, 0.8),
    "Full range": (0.5, 1.6),
}


def robust_range(data: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """The ``low``/``high`` percentiles of the non-zero voxels (of all voxels when none is non-zero).

    Computed on a strided subsample of at most ~1M voxels, so it is fast on any volume.
    """
    flat = np.asarray(data).ravel()
    step = max(1, flat.size // 1_000_000)
    sample = flat[::step]
    sample = sample[np.isfinite(sample)]
    nz = sample[sample != 0]
    use = nz if nz.size > 16 else sample
    if use.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(use, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


@dataclasses.dataclass
class DisplayVolume:
    """A volume as the viewer shows it: RAS-ordered view of the voxels, voxel sizes, slice extraction.

    ``data`` is a view of the source array (flips and transposes only), so changes to the source array
    show at the next repaint.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]

    @classmethod
    def from_array(cls, array: np.ndarray, affine: np.ndarray) -> "DisplayVolume":
        """Reorient ``array`` (indexed like a NIfTI array under ``affine``) to RAS without copying."""
        from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

        ornt = io_orientation(np.asarray(affine))
        transform = ornt_transform(ornt, axcodes2ornt("RAS"))
        view = apply_orientation(np.asarray(array), transform)
        zooms = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
        spacing = tuple(float(zooms[i]) for i in np.argsort(transform[:, 0]))
        return cls(view, spacing)  # type: ignore[arg-type]

    @classmethod
    def from_volume(cls, volume) -> "DisplayVolume":
        return cls.from_array(volume.data, volume.affine)

    def n_slices(self, plane: str) -> int:
        return int(self.data.shape[PLANES[plane]])

    def slice(self, plane: str, index: int) -> np.ndarray:
        """The 2D image of ``plane`` at ``index`` in screen order (row 0 at the top), radiological convention:
        the patient's right on the left of the screen; anterior (axial) or superior (coronal, sagittal) up."""
        index = int(np.clip(index, 0, self.n_slices(plane) - 1))
        d = self.data
        if plane == "axial":
            return d[::-1, ::-1, index].T
        if plane == "coronal":
            return d[::-1, index, ::-1].T
        return d[index, ::-1, ::-1].T

    def pixel_size(self, plane: str) -> tuple[float, float]:
        """(width, height) of one screen pixel in mm for ``plane``."""
        sx, sy, sz = self.spacing
        return {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}[plane]

    def voxel_at(self, plane: str, index: int, col: int, row: int) -> tuple[int, int, int]:
        """RAS-array index of screen pixel (col, row) of ``plane`` slice ``index``."""
        nx, ny, nz = self.data.shape
        if plane == "axial":
            return nx - 1 - col, ny - 1 - row, index
        if plane == "coronal":
            return nx - 1 - col, index, nz - 1 - row
        return index, ny - 1 - col, nz - 1 - row


def window_to_uint8(image: np.ndarray, value_range: tuple[float, float], level: float, width: float) -> np.ndarray:
    """Map ``image`` to 0-255: normalise by ``value_range`` (to 0..1), then apply level/width (normalised)."""
    lo, hi = value_range
    scale = 1.0 / max(hi - lo, 1e-12)
    width = max(float(width), 1e-6)
    start = float(level) - width / 2.0
    x = (np.asarray(image, dtype=np.float32) - np.float32(lo)) * np.float32(scale)
    x = (x - np.float32(start)) * np.float32(255.0 / width)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def colour_lut(name: str) -> np.ndarray:
    """A 256 x 3 uint8 colour table from a matplotlib colormap ("inferno" for errors, "viridis" for trust)."""
    from matplotlib import colormaps

    cmap = colormaps[name]
    return (np.asarray(cmap(np.linspace(0, 1, 256)))[:, :3] * 255).astype(np.uint8)


def blend_overlay(gray: np.ndarray, overlay: np.ndarray, value_range: tuple[float, float], lut: np.ndarray,
                  opacity: float) -> np.ndarray:
    """RGB (H, W, 3) uint8: the grey image with ``overlay`` coloured by ``lut`` blended at ``opacity``.

    Overlay values at or below the bottom of ``value_range`` stay transparent.
    """
    lo, hi = value_range
    norm = (np.asarray(overlay, dtype=np.float32) - lo) / max(hi - lo, 1e-12)
    idx = np.clip(norm * 255, 0, 255).astype(np.uint8)
    colour = lut[idx].astype(np.float32)
    base = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    alpha = np.where(norm > 0, np.float32(opacity), np.float32(0))[..., None]
    return (base * (1 - alpha) + colour * alpha).astype(np.uint8)
