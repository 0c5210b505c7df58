"""The EDTS-Trans Table III protocol: segment the source, the real target and the synthetic image with the same
prompts, and score each against a ground-truth mask and against each other.

Without prompts from the caller, the prompts come from the ground truth, as segmentation benchmarks derive
them:

* ``mode="slices"``: a box around the object on every slice where the ground truth has it; each slice is
  segmented on its own (2D, as the paper segments 2D BraTS slices);
* ``mode="propagate"``: one box on the key slice (where the object is largest), propagated through the volume
  forward and backward (MedSAM2's 3D protocol).

With the user's prompts (``prompts=``: :class:`~.prompts.SlicePrompt` objects in frame coordinates, as
:class:`~.segmenter.Segmenter` takes them), exactly those are used for every image: in ``"slices"`` mode each
prompted slice is segmented on its own (the others stay empty, so a slice that holds the object but has no
prompt counts with Dice 0), in ``"propagate"`` mode the mask is propagated from the first prompted slice
forward and backward. The ground truth is then only used for scoring. The report records which prompts were
used (:attr:`SegEvalReport.prompt_source`: ``"ground truth"`` or ``"user"``).

Scores
------
For each image: **Dice** and **IoU** of the whole 3D mask, and the **mean per-slice Dice** and **mIoU** over
the slices where the ground truth has the object (the paper's mIoU is a mean over 2D images). For each pair of
images: Dice and IoU between their masks (do the real and the synthetic image give the same segmentation?).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..core.errors import GeometryMismatchError, InvalidVolumeError, UnknownChoiceError
from ..core.metrics import dice, iou
from ..core.volume import Volume
from .frames import FrameGeometry
from .prompts import SlicePrompt, check_prompts, prompts_from_mask
from .segmenter import SegmentationResult, Segmenter

__all__ = [
    "EVAL_MODES",
    "PROMPT_SOURCES",
    "ImageScore",
    "PairScore",
    "SegEvalReport",
    "ground_truth_mask",
    "slice_scores",
    "evaluate_segmentation",
    "format_report",
    "write_reports_csv",
]

EVAL_MODES = ("slices", "propagate")
#: Where the prompts of an evaluation came from.
PROMPT_SOURCES = ("ground truth", "user")


@dataclasses.dataclass(frozen=True)
class ImageScore:
    """One image's mask against the ground truth."""

    image: str
    dice: float
    iou: float
    mean_slice_dice: float
    mean_slice_iou: float
    n_slices: int


@dataclasses.dataclass(frozen=True)
class PairScore:
    """Agreement between the masks of two images."""

    a: str
    b: str
    dice: float
    iou: float


@dataclasses.dataclass
class SegEvalReport:
    """Scores of one model on a set of images.

    Attributes
    ----------
    model, mode : str
    labels : list of int or None
        Label values forming the object (None: any non-zero label).
    images : list of ImageScore
    pairs : list of PairScore
    results : dict of str to SegmentationResult
        The masks, by image name.
    prompt_source : {"ground truth", "user"}
        Whether the prompts were derived from the ground truth or given by the user.
    prompts : list of SlicePrompt
        The prompts every image was segmented with (frame coordinates).
    """

    model: str
    mode: str
    labels: list[int] | None
    images: list[ImageScore]
    pairs: list[PairScore]
    results: dict[str, SegmentationResult] = dataclasses.field(default_factory=dict, repr=False)
    prompt_source: str = "ground truth"
    prompts: list[SlicePrompt] = dataclasses.field(default_factory=list, repr=False)

    def rows(self) -> list[dict]:
        """One dict per score (for CSV): image against ground truth, then pairs."""
        base = {"model": self.model, "mode": self.mode, "prompts": self.prompt_source,
                "labels": " ".join(map(str, self.labels)) if self.labels else "nonzero"}
        out = []
        for s in self.images:
            out.append({**base, "image": s.image, "reference": "ground truth", "dice": s.dice, "iou": s.iou,
                        "mean_slice_dice": s.mean_slice_dice, "mean_slice_iou": s.mean_slice_iou,
                        "n_slices": s.n_slices})
        for p in self.pairs:
            out.append({**base, "image": p.a, "reference": p.b, "dice": p.dice, "iou": p.iou,
                        "mean_slice_dice": "", "mean_slice_iou": "", "n_slices": ""})
        return out


def ground_truth_mask(labels: Volume | np.ndarray, values: Sequence[int] | None = None) -> np.ndarray:
    """Boolean mask of the voxels whose (rounded) label is in ``values`` (None: any non-zero label)."""
    data = labels.data if isinstance(labels, Volume) else np.asarray(labels)
    lab = np.rint(data).astype(np.int64)
    return lab != 0 if values is None else np.isin(lab, [int(v) for v in values])


def slice_scores(pred_frames: np.ndarray, truth_frames: np.ndarray) -> tuple[float, float, int]:
    """Mean per-slice Dice and IoU over the slices where the truth is non-empty, and how many there are.

    Both arrays are frames ``[slice, row, column]``. With no such slice the means are NaN.
    """
    d, j = [], []
    for s in range(truth_frames.shape[0]):
        if truth_frames[s].any():
            d.append(dice(pred_frames[s], truth_frames[s]))
            j.append(iou(pred_frames[s], truth_frames[s]))
    if not d:
        return float("nan"), float("nan"), 0
    return float(np.mean(d)), float(np.mean(j)), len(d)


def evaluate_segmentation(
    images: Mapping[str, Volume],
    ground_truth: Volume,
    segmenter: Segmenter,
    *,
    labels: Sequence[int] | None = None,
    mode: str = "slices",
    margin: float = 0.0,
    window=None,
    largest_component: bool = False,
    prompts: SlicePrompt | Sequence[SlicePrompt] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> SegEvalReport:
    """Segment every image with the same prompts (the user's, else derived from the ground truth) and score
    the masks.

    Parameters
    ----------
    images : mapping of str to Volume
        Names (e.g. "T1 (source)", "T2 (real)", "T2 (synthetic)") to volumes on the ground truth's grid.
    ground_truth : Volume
        Label map (the object's voxels are scored; without ``prompts`` its boxes are the prompts).
    segmenter : Segmenter
    labels : sequence of int, optional
        Label values that form the object (default: any non-zero label).
    mode : {"slices", "propagate"}
        See the module notes.
    margin : float
        Pixels added around the ground-truth box (not used with ``prompts``).
    window, largest_component
        As in :meth:`Segmenter.segment_slices`; the window is resolved per image.
    prompts : SlicePrompt or sequence of SlicePrompt, optional
        The user's prompts, in frame coordinates of the ground truth's grid (see :mod:`.frames`), at most one
        per slice; used as they are for every image. None: derive them from the ground truth.
    progress, should_cancel : callables, optional
        ``progress(done, total)`` counts slices over all images.

    Returns
    -------
    SegEvalReport

    Raises
    ------
    GeometryMismatchError
        An image is not on the ground truth's grid.
    InvalidVolumeError
        The ground truth has none of the requested labels.
    PromptError
        ``prompts`` is empty, has two prompts on one slice, or lies outside the ground truth's frames.
    """
    if mode not in EVAL_MODES:
        raise UnknownChoiceError("evaluation mode", mode, EVAL_MODES)
    if not images:
        raise ValueError('Argument "images" must name at least one volume.')
    for name, vol in images.items():
        if not vol.same_grid(ground_truth):
            raise GeometryMismatchError(
                f"image {name!r} (shape {vol.shape}) is not on the ground truth's grid (shape "
                f"{ground_truth.shape}); resample one onto the other first", vol.path)
    truth = ground_truth_mask(ground_truth, labels)
    if not truth.any():
        which = f"labels {list(labels)}" if labels else "non-zero labels"
        raise InvalidVolumeError(f"the ground truth has no voxel with {which}", ground_truth.path)
    geom = FrameGeometry.of(ground_truth)
    truth_frames = geom.to_frames(truth)
    if prompts is None:
        source = "ground truth"
        prompts = prompts_from_mask(truth_frames, mode="slices" if mode == "slices" else "key", margin=margin)
    else:
        source = "user"
        prompts = check_prompts(prompts, geom.shape)
    per_image = len(prompts) if mode == "slices" else geom.n_slices
    total = per_image * len(images)
    results: dict[str, SegmentationResult] = {}
    scores: list[ImageScore] = []
    for n, (name, vol) in enumerate(images.items()):
        def step(done, _total, _offset=n * per_image):
            if progress is not None:
                progress(_offset + done, total)

        kw = dict(window=window, largest_component=largest_component, progress=step, should_cancel=should_cancel)
        if mode == "slices":
            res = segmenter.segment_slices(vol, prompts, **kw)
        else:
            res = segmenter.propagate(vol, prompts, direction="both", **kw)
        results[name] = res
        md, mj, ns = slice_scores(geom.to_frames(res.mask), truth_frames)
        scores.append(ImageScore(name, float(dice(res.mask, truth)), float(iou(res.mask, truth)), md, mj, ns))
    names = list(results)
    pairs = [
        PairScore(a, b, float(dice(results[a].mask, results[b].mask)), float(iou(results[a].mask, results[b].mask)))
        for i, a in enumerate(names) for b in names[i + 1:]
    ]
    return SegEvalReport(segmenter.name, mode, [int(v) for v in labels] if labels else None, scores, pairs, results,
                         prompt_source=source, prompts=list(prompts))


def _fmt(v) -> str:
    return "   n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"


def format_report(reports: Sequence[SegEvalReport]) -> str:
    """A Table III-style text table: images by rows (mIoU, Dice, 3D Dice, 3D IoU), models by columns, then
    the agreement between images."""
    if not reports:
        return "(no results)"
    models = [r.model for r in reports]
    names = [s.image for s in reports[0].images]
    width = max([len(n) for n in names] + [len(f"{a} vs {b}") for a, b in
                                             ((p.a, p.b) for p in reports[0].pairs)] + [10])
    col = max(10, *(len(m) for m in models))
    head = f"{'image':<{width}}  {'metric':<16}" + "".join(f"  {m:>{col}}" for m in models)
    sources = sorted({r.prompt_source for r in reports})
    origin = " and ".join("the user" if s == "user" else "the ground truth" for s in sources)
    lines = [f"segmentation against the ground truth ({reports[0].mode} mode, prompts from {origin})", head,
             "-" * len(head)]
    rows = (("mIoU (per slice)", "mean_slice_iou"), ("Dice (per slice)", "mean_slice_dice"),
            ("Dice (3D)", "dice"), ("IoU (3D)", "iou"))
    for name in names:
        for i, (label, attr) in enumerate(rows):
            vals = []
            for r in reports:
                s = next((x for x in r.images if x.image == name), None)
                vals.append(getattr(s, attr) if s is not None else None)
            cells = "".join(f"  {_fmt(v):>{col}}" for v in vals)
            lines.append(f"{name if i == 0 else '':<{width}}  {label:<16}{cells}")
    if reports[0].pairs:
        lines += ["", "agreement between images (Dice / IoU of their masks)", head, "-" * len(head)]
        for p in reports[0].pairs:
            for i, attr in enumerate(("dice", "iou")):
                vals = []
                for r in reports:
                    q = next((x for x in r.pairs if (x.a, x.b) == (p.a, p.b)), None)
                    vals.append(getattr(q, attr) if q is not None else None)
                cells = "".join(f"  {_fmt(v):>{col}}" for v in vals)
                label = "Dice" if attr == "dice" else "IoU"
                lines.append(f"{f'{p.a} vs {p.b}' if i == 0 else '':<{width}}  {label:<16}{cells}")
    n = reports[0].images[0].n_slices if reports[0].images else 0
    lines.append(f"\n{n} slices hold the object; labels: "
                 + (" ".join(map(str, reports[0].labels)) if reports[0].labels else "any non-zero"))
    return "\n".join(lines)


def write_reports_csv(reports: Sequence[SegEvalReport], path: str | os.PathLike) -> Path:
    """Write every score of every report as CSV rows; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "mode", "prompts", "labels", "image", "reference", "dice", "iou", "mean_slice_dice",
              "mean_slice_iou", "n_slices"]
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in reports:
            for row in r.rows():
                w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return p
