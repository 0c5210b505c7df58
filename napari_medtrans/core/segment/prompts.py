"""Prompts on frames (points and boxes), prompts derived from a ground-truth mask, and mask clean-up.

Coordinates are frame pixels (see :mod:`.frames`): ``x`` is the column, ``y`` the row; a box is
``(x0, y0, x1, y1)`` with the corners on the first and last pixel it covers (SAM's convention).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = [
    "SlicePrompt",
    "box_of_mask",
    "prompts_from_mask",
    "key_slice",
    "largest_component",
]


@dataclasses.dataclass(frozen=True)
class SlicePrompt:
    """What the user (or a benchmark) gives on one slice.

    Parameters
    ----------
    slice : int
        Frame (slice) number.
    points : sequence of (x, y)
        Clicks in frame pixels.
    labels : sequence of int
        1 for a positive point (inside the object), 0 for a negative one; one per point.
    box : (x0, y0, x1, y1), optional
        A box around the object.
    """

    slice: int
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self):
        pts = tuple((float(p[0]), float(p[1])) for p in self.points)
        labs = tuple(int(v) for v in self.labels)
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "labels", labs)
        object.__setattr__(self, "slice", int(self.slice))
        if len(pts) != len(labs):
            raise ValueError(
                f'Arguments "points" and "labels" must have the same length, got {len(pts)} and {len(labs)}.')
        if any(v not in (0, 1) for v in labs):
            raise ValueError(f'Argument "labels" must hold 1 (positive) or 0 (negative) only, got {list(labs)}.')
        if self.box is not None:
            b = tuple(float(v) for v in self.box)
            if len(b) != 4 or not all(np.isfinite(b)):
                raise ValueError(f'Argument "box" must be (x0, y0, x1, y1), got {self.box!r}.')
            b = (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
            object.__setattr__(self, "box", b)
        if not pts and self.box is None:
            raise ValueError(f"a prompt on slice {self.slice} needs at least one point or a box.")
        if pts and self.box is None and 1 not in labs:
            raise ValueError(
                f"the prompt on slice {self.slice} has only negative points; add a positive point or a box.")

    def check_fits(self, n_slices: int, height: int, width: int) -> None:
        """Raise ValueError when the prompt lies outside frames of this size."""
        if not 0 <= self.slice < n_slices:
            raise ValueError(f"prompt slice {self.slice} is outside the volume's {n_slices} slices.")
        xs = [p[0] for p in self.points] + ([self.box[0], self.box[2]] if self.box else [])
        ys = [p[1] for p in self.points] + ([self.box[1], self.box[3]] if self.box else [])
        if any(x < -0.5 or x > width - 0.5 for x in xs) or any(y < -0.5 or y > height - 0.5 for y in ys):
            raise ValueError(
                f"prompt on slice {self.slice} lies outside the {width} x {height} frame (x, y in pixels)."
            )


def box_of_mask(mask2d: np.ndarray, margin: float = 0.0) -> tuple[float, float, float, float] | None:
    """The box ``(x0, y0, x1, y1)`` around the non-zero pixels of a 2D mask, grown by ``margin`` pixels and
    kept inside the frame; None for an empty mask."""
    rows = np.flatnonzero(np.any(mask2d, axis=1))
    cols = np.flatnonzero(np.any(mask2d, axis=0))
    if rows.size == 0:
        return None
    h, w = mask2d.shape
    return (
        float(max(0.0, cols[0] - margin)),
        float(max(0.0, rows[0] - margin)),
        float(min(w - 1.0, cols[-1] + margin)),
        float(min(h - 1.0, rows[-1] + margin)),
    )


def key_slice(frames_mask: np.ndarray) -> int | None:
    """The slice with the largest labelled area (the "key slice" of lesion benchmarks); None when empty."""
    areas = np.asarray(frames_mask).reshape(frames_mask.shape[0], -1).astype(bool).sum(axis=1)
    return int(np.argmax(areas)) if areas.max(initial=0) > 0 else None


def prompts_from_mask(frames_mask: np.ndarray, *, mode: str = "slices", margin: float = 0.0) -> list[SlicePrompt]:
    """Box prompts derived from a ground-truth mask given as frames ``[slice, row, column]``.

    Parameters
    ----------
    frames_mask : ndarray
        Non-zero where the object is.
    mode : {"slices", "key"}
        "slices": a box around the object on every slice where it appears (2D evaluation). "key": one box
        on the slice where the object is largest (to propagate from).
    margin : float
        Pixels added on each side of the tight box.

    Returns
    -------
    list of SlicePrompt
        Empty when the mask is empty.
    """
    m = np.asarray(frames_mask) != 0
    if mode == "key":
        k = key_slice(m)
        return [] if k is None else [SlicePrompt(k, box=box_of_mask(m[k], margin))]
    if mode != "slices":
        raise ValueError(f'Argument "mode" must be "slices" or "key", got {mode!r}.')
    out = []
    for s in range(m.shape[0]):
        box = box_of_mask(m[s], margin)
        if box is not None:
            out.append(SlicePrompt(s, box=box))
    return out


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected component of a 2D or 3D mask (full connectivity: 8 in 2D, 26 in 3D)."""
    from scipy import ndimage

    m = np.asarray(mask).astype(bool)
    if not m.any():
        return m
    structure = ndimage.generate_binary_structure(m.ndim, m.ndim)
    labels, n = ndimage.label(m, structure=structure)
    if n <= 1:
        return m
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def as_prompt_list(prompts: SlicePrompt | Sequence[SlicePrompt]) -> list[SlicePrompt]:
    """One prompt or several as a list (at most one per slice)."""
    items = [prompts] if isinstance(prompts, SlicePrompt) else list(prompts)
    if not items:
        raise ValueError("no prompt given: add at least one point or box.")
    for p in items:
        if not isinstance(p, SlicePrompt):
            raise TypeError(f'Argument "prompts" must hold SlicePrompt objects, got {type(p).__name__}.')
    seen = [p.slice for p in items]
    if len(set(seen)) != len(seen):
        raise ValueError(f"several prompts on the same slice {sorted(seen)}; merge them into one SlicePrompt.")
    return items
