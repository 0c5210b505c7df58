"""Slices of a Volume as the frames a SAM2 model sees, and the way back.

Orientation
-----------
Frames are axial slices shown the radiological way, as napari shows a volume loaded by this package: slice
``s`` runs from inferior to superior, frame rows from anterior (top) to posterior, frame columns from the
patient's right (left of the image) to the patient's left. SAM2 and MedSAM2 were trained on images seen this
way up, so a volume stored in any orientation (RAS NIfTI, LPS DICOM, oblique) is reoriented by axis
permutation and flips only (never resampled) before it is segmented, and masks are put back on the volume's
own (i, j, k) grid exactly.

Prompts are given in frame coordinates: ``x`` is the column, ``y`` the row, in pixels (SAM's convention).
:meth:`FrameGeometry.index_to_frame` turns a volume index (what a napari click gives after
``world_to_index``) into ``(slice, x, y)``.

Intensities (MedSAM2's preprocessing)
-------------------------------------
Each slice is windowed to ``[lo, hi]`` and scaled to 0..255 as uint8 (by default the 0.5th and 99.5th
percentiles of the volume's non-zero voxels, as MedSAM prepares MR), copied into three channels, resized to the
model's square input with Pillow's bicubic filter (what SAM2's own frame loader does), divided by 255 and
normalised with the ImageNet mean and standard deviation.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np

from ..core.errors import InvalidVolumeError
from ..core.volume import Volume

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FrameGeometry",
    "Window",
    "resolve_window",
    "window_to_uint8",
    "frame_tensor",
    "volume_digest",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# RAS (x, y, z) to the display axes (Superior, Posterior, Left): the same convention as the napari layers.
_DISPLAY_FROM_RAS = np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Window:
    """An intensity window ``[lo, hi]`` mapped to 0..255."""

    lo: float
    hi: float

    def key(self) -> tuple[float, float]:
        """Rounded values for cache keys (a window that differs only in float noise is the same window)."""
        return (float(np.float32(self.lo)), float(np.float32(self.hi)))


def resolve_window(volume: Volume | np.ndarray, window=None) -> Window:
    """The intensity window for a volume.

    Parameters
    ----------
    volume : Volume or ndarray
    window : None, (lo, hi), or ("percentile", p_lo, p_hi)
        None: the 0.5th and 99.5th percentiles of the non-zero voxels (MedSAM's MR preparation). A pair of
        numbers is used as given. ``("percentile", a, b)`` uses other percentiles of the non-zero voxels.

    Returns
    -------
    Window

    Raises
    ------
    ValueError
        A malformed window (names the argument).
    """
    if isinstance(window, Window):
        return window
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume)
    p_lo, p_hi = 0.5, 99.5
    if window is not None:
        w = tuple(window)
        if len(w) == 3 and w[0] == "percentile":
            p_lo, p_hi = float(w[1]), float(w[2])
            if not 0 <= p_lo < p_hi <= 100:
                raise ValueError(f'Argument "window" percentiles must satisfy 0 <= lo < hi <= 100, got {w[1:]}.')
        elif len(w) == 2:
            lo, hi = float(w[0]), float(w[1])
            if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
                raise ValueError(f'Argument "window" must be (lo, hi) with lo < hi, got {window!r}.')
            return Window(lo, hi)
        else:
            raise ValueError(f'Argument "window" must be None, (lo, hi) or ("percentile", lo, hi), got {window!r}.')
    values = data[np.isfinite(data) & (data != 0)]
    if values.size == 0:
        return Window(0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(values, [p_lo, p_hi]))
    if hi <= lo:
        hi = lo + 1.0
    return Window(lo, hi)


def window_to_uint8(image: np.ndarray, window: Window) -> np.ndarray:
    """Clip to the window and scale to 0..255 (uint8), MedSAM2's first step."""
    scaled = (np.clip(image, window.lo, window.hi) - window.lo) * (255.0 / (window.hi - window.lo))
    return np.rint(scaled).astype(np.uint8)


def frame_tensor(image_u8: np.ndarray, image_size: int):
    """A windowed uint8 slice as the model's input: ``[3, S, S]`` float32, ImageNet-normalised.

    The slice is resized to ``image_size`` squared with Pillow's bicubic filter (as SAM2's frame loader and
    MedSAM2 do) and repeated over three channels.
    """
    import torch
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image_u8))
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), resample=Image.Resampling.BICUBIC)
    plane = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return (plane.expand(3, -1, -1) - mean) / std


def volume_digest(data: np.ndarray) -> str:
    """A content hash of voxel data (shape, dtype and bytes): the same image gives the same key."""
    arr = np.ascontiguousarray(data)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((arr.shape, arr.dtype.str)).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class FrameGeometry:
    """How a volume's (i, j, k) grid maps to frames (slice, row, column), radiological axial view.

    Attributes
    ----------
    perm : tuple of 3 ints
        ``perm[d]`` is the volume axis shown along display axis ``d`` (0: slices, 1: rows, 2: columns).
    flip : tuple of 3 bools
        Whether the volume axis runs against the display axis.
    volume_shape : tuple of 3 ints
        Shape of the volume (i, j, k).
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    volume_shape: tuple[int, int, int]

    @classmethod
    def of(cls, volume: Volume) -> "FrameGeometry":
        """The geometry of ``volume`` (its affine decides which axis is axial and which way is up)."""
        from nibabel.orientations import io_orientation

        aff = np.eye(4)
        aff[:3, :3] = _DISPLAY_FROM_RAS @ np.asarray(volume.affine, dtype=np.float64)[:3, :3]
        ornt = io_orientation(aff)
        perm = [0, 0, 0]
        flip = [False, False, False]
        for vol_axis, (disp_axis, direction) in enumerate(ornt):
            perm[int(disp_axis)] = vol_axis
            flip[int(disp_axis)] = bool(direction < 0)
        return cls(tuple(perm), tuple(flip), volume.shape)  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(number of slices, frame height, frame width)."""
        return tuple(self.volume_shape[a] for a in self.perm)  # type: ignore[return-value]

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    def to_frames(self, data: np.ndarray) -> np.ndarray:
        """The volume's array as frames ``[slice, row, column]`` (a view; nothing is resampled)."""
        data = np.asarray(data)
        if tuple(data.shape) != tuple(self.volume_shape):
            raise InvalidVolumeError(f"array of shape {data.shape} does not match the volume {self.volume_shape}")
        out = data.transpose(self.perm)
        flips = tuple(d for d in range(3) if self.flip[d])
        return np.flip(out, flips) if flips else out

    def to_volume(self, frames: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_frames`: a ``[slice, row, column]`` array back on the volume's (i, j, k) grid."""
        frames = np.asarray(frames)
        if tuple(frames.shape) != self.shape:
            raise InvalidVolumeError(f"frames of shape {frames.shape} do not match {self.shape}")
        flips = tuple(d for d in range(3) if self.flip[d])
        if flips:
            frames = np.flip(frames, flips)
        return frames.transpose(np.argsort(self.perm))

    def index_to_frame(self, index: Sequence[float]) -> tuple[int, float, float]:
        """A volume index (i, j, k) as ``(slice, x, y)``: the slice number, column and row of the frame."""
        idx = np.asarray(index, dtype=np.float64)
        if idx.shape != (3,):
            raise ValueError(f'Argument "index" needs three coordinates (i, j, k), got {idx.tolist()}.')
        disp = []
        for d in range(3):
            v = idx[self.perm[d]]
            n = self.volume_shape[self.perm[d]]
            disp.append((n - 1) - v if self.flip[d] else v)
        return int(round(disp[0])), float(disp[2]), float(disp[1])

    def frame_to_index(self, slice_: int, x: float, y: float) -> np.ndarray:
        """Inverse of :meth:`index_to_frame`: the volume index (i, j, k) of a frame point."""
        disp = (float(slice_), float(y), float(x))
        idx = np.zeros(3)
        for d in range(3):
            n = self.volume_shape[self.perm[d]]
            idx[self.perm[d]] = (n - 1) - disp[d] if self.flip[d] else disp[d]
        return idx
