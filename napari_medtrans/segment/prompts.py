"""Prompts on frames (points and boxes), prompts derived from a ground-truth mask, and mask clean-up.

Coordinates are frame pixels (see :mod:`.frames`): ``x`` is the column, ``y`` the row; a box is
``(x0, y0, x1, y1)`` with the corners on the first and last pixel it covers (SAM's convention).

Prompt files
------------
:func:`load_prompts_json` reads prompts written by hand or by a script, in the same frame coordinates::

    {"slices": [
        {"slice": 3, "points": [[20, 24, 1], [5, 6, 0]], "box": [10, 12, 30, 36]},
        {"slice": 5, "points": [[21, 25]]}
    ]}

``slice`` is the axial frame number (0 = the most inferior slice), each point is ``[x, y, label]`` (label 1
positive, 0 negative; omitted: 1), ``box`` is ``[x0, y0, x1, y1]``; each entry needs a point or a box. A
``"comment"`` key is allowed at the top level and in entries.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np

from ..core.errors import MedtransError

__all__ = [
    "PromptError",
    "SlicePrompt",
    "box_of_mask",
    "check_prompts",
    "load_prompts_json",
    "prompts_from_mask",
    "key_slice",
    "largest_component",
]


class PromptError(MedtransError, ValueError):
    """Prompts that cannot be used: a malformed prompt file, a slice or point outside the image, no prompt.

    ``str(err)`` names the file (when the prompts came from one) and the problem.
    """


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


def check_prompts(prompts: SlicePrompt | Sequence[SlicePrompt], shape: Sequence[int],
                  path: str | os.PathLike | None = None) -> list[SlicePrompt]:
    """The prompts as a list, checked against frames of ``shape`` (slices, height, width).

    Raises
    ------
    PromptError
        No prompt, several on one slice, or a slice, point or box outside the frames (names ``path`` if given).
    """
    try:
        items = as_prompt_list(prompts)
        n, h, w = (int(v) for v in shape)
        for p in items:
            p.check_fits(n, h, w)
    except (ValueError, TypeError) as exc:
        raise PromptError(str(exc).rstrip("."), path) from None
    return items


_ENTRY_KEYS = {"slice", "points", "box", "comment"}


def load_prompts_json(path: str | os.PathLike, shape: Sequence[int] | None = None) -> list[SlicePrompt]:
    """Read prompts from a JSON file (format in the module notes), checked against frames of ``shape``.

    Parameters
    ----------
    path : path-like
    shape : (slices, height, width), optional
        The frames the prompts go on (:attr:`FrameGeometry.shape <.frames.FrameGeometry.shape>`); when given,
        a slice, point or box outside them is an error.

    Returns
    -------
    list of SlicePrompt
        In the file's order, one per slice.

    Raises
    ------
    PromptError
        The file cannot be read, is not JSON, does not follow the format, or lies outside the frames; the
        message names the file and the entry.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise PromptError(f"cannot read the prompt file: {exc.strerror or exc}", path) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", path) from None
    example = '{"slices": [{"slice": 3, "points": [[x, y, 1]], "box": [x0, y0, x1, y1]}]}'
    if not isinstance(doc, dict) or "slices" not in doc:
        raise PromptError(f'expected an object with a "slices" list, like {example}', path)
    extra = sorted(set(doc) - {"slices", "comment"})
    if extra:
        raise PromptError(f"unknown key(s) {extra} at the top level; prompts are given in axial frame coordinates "
                          'under "slices" only', path)
    entries = doc["slices"]
    if not isinstance(entries, list) or not entries:
        raise PromptError(f'"slices" must be a non-empty list of prompts, like {example}', path)

    def number(v, where):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise PromptError(f"{where} must be a number, got {json.dumps(v)}", path)
        return float(v)

    out: list[SlicePrompt] = []
    seen: dict[int, int] = {}
    for n, e in enumerate(entries):
        where = f"slices[{n}]"
        if not isinstance(e, dict):
            raise PromptError(f"{where} must be an object with \"slice\" and \"points\" and/or \"box\", got "
                              f"{json.dumps(e)}", path)
        extra = sorted(set(e) - _ENTRY_KEYS)
        if extra:
            raise PromptError(f"{where} has unknown key(s) {extra}; allowed: slice, points, box", path)
        if "slice" not in e:
            raise PromptError(f'{where} has no "slice"', path)
        s = e["slice"]
        if isinstance(s, bool) or not isinstance(s, int):
            raise PromptError(f'{where}: "slice" must be a whole number, got {json.dumps(s)}', path)
        if s in seen:
            raise PromptError(f"{where} and slices[{seen[s]}] are both on slice {s}; put every point and the box "
                              "of a slice in one entry", path)
        seen[s] = n
        points, labels = [], []
        raw_points = e.get("points", [])
        if not isinstance(raw_points, list):
            raise PromptError(f'{where}: "points" must be a list of [x, y, label], got {json.dumps(raw_points)}',
                              path)
        for m, pt in enumerate(raw_points):
            pw = f"{where}.points[{m}]"
            if not isinstance(pt, list) or len(pt) not in (2, 3):
                raise PromptError(f"{pw} must be [x, y] or [x, y, label], got {json.dumps(pt)}", path)
            x, y = number(pt[0], f"{pw} x"), number(pt[1], f"{pw} y")
            label = pt[2] if len(pt) == 3 else 1
            if isinstance(label, bool) or label not in (0, 1):
                raise PromptError(f"{pw}: the label must be 1 (positive) or 0 (negative), got {json.dumps(label)}",
                                  path)
            points.append((x, y))
            labels.append(int(label))
        box = e.get("box")
        if box is not None:
            if not isinstance(box, list) or len(box) != 4:
                raise PromptError(f'{where}: "box" must be [x0, y0, x1, y1], got {json.dumps(box)}', path)
            box = tuple(number(v, f"{where}.box[{i}]") for i, v in enumerate(box))
        try:
            prompt = SlicePrompt(s, points=points, labels=labels, box=box)
        except ValueError as exc:
            raise PromptError(f"{where}: {str(exc).rstrip('.')}", path) from None
        if shape is not None:
            _fits_or_raise(prompt, [int(v) for v in shape], where, path)
        out.append(prompt)
    return out


def _fits_or_raise(p: SlicePrompt, shape: list[int], where: str, path) -> None:
    """Like :meth:`SlicePrompt.check_fits`, naming the entry and the point or box that lies outside."""
    n, h, w = shape
    if not 0 <= p.slice < n:
        raise PromptError(f"{where}: slice {p.slice} is outside the image's {n} axial slices (0 to {n - 1})", path)
    frame = f"the {w} x {h} frame (x from 0 to {w - 1}, y from 0 to {h - 1})"
    for m, (x, y) in enumerate(p.points):
        if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
            raise PromptError(f"{where}.points[{m}] (x={x:g}, y={y:g}) lies outside {frame}", path)
    if p.box is not None:
        x0, y0, x1, y1 = p.box
        if not (-0.5 <= x0 and x1 <= w - 0.5 and -0.5 <= y0 and y1 <= h - 0.5):
            raise PromptError(f"{where}.box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside {frame}", path)


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
