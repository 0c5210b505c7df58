"""Choose the promptable segmenter's decision threshold on validation subjects (``medtrans segmenter calibrate``).

The network outputs mask logits; a pixel is in the mask where its logit exceeds the file's decision threshold
(0 for a file never calibrated). A network trained with binary cross-entropy plus soft Dice need not put its best
boundary at 0: the shipped one over-includes at 0 (its model card). Calibration picks the threshold once, on
subjects the network was not trained on, and stores it in a copy of the file, so every user of the file (the
GUIs, ``medtrans segment``, Table III) segments with the same operating point.

Protocol (a choice: the papers train SAM-style segmenters with no threshold tuning)
---------------------------------------------------------------------------------
* Subjects: those of ``split`` (default ``val``) with tumour labels.
* Prompts: Table III's (:mod:`.table3`): a box around the region from the ground truth on every slice where it
  appears, each slice on its own.
* Cells: every contrast of ``contrasts`` (default FLAIR, T2, T1c: Table III's) with each region that shows on it:
  whole tumour only on the contrasts where the oedema shows (:data:`.train.REGION_CONTRASTS`), tumour core and
  enhancing rim on all.
* Objective: the mean over cells of the mean Dice of the 3-D masks over subjects; the threshold of ``grid``
  (default -1 to 4 in steps of 0.25) with the highest objective wins (the lowest such threshold on a tie).
* The logits of each (subject, contrast, region) are computed once and thresholded at every grid value.

The calibrated file keeps the source's tensors and metadata and adds ``threshold`` and ``calibration`` (JSON:
split, subjects, cells, the objective at every grid value).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core import io
from ..core.dataset import load_dataset
from ..core.errors import MedtransError
from ..core.metrics import dice
from .prompts import prompts_from_mask

__all__ = ["DEFAULT_GRID", "calibrate_threshold"]

#: Thresholds tried by default.
DEFAULT_GRID = tuple(float(v) for v in np.arange(-1.0, 4.0001, 0.25))


def _cells(contrasts: Sequence[str]) -> list[tuple[str, str]]:
    from .table3 import REGIONS
    from .train import REGION_CONTRASTS

    names = {"whole tumour": "whole", "tumour core": "core", "enhancing tumour": "enhancing"}
    cells = []
    for c in contrasts:
        for region in REGIONS:
            allowed = REGION_CONTRASTS.get(names[region])
            if allowed is None or c in allowed:
                cells.append((c, region))
    return cells


def calibrate_threshold(model: str | Path, data: str | Path, out: str | Path, *, split: str = "val",
                        contrasts: Sequence[str] = ("FLAIR", "T2", "T1c"), grid: Sequence[float] = DEFAULT_GRID,
                        log: Callable[[str], None] = print) -> tuple[float, dict[float, float]]:
    """Choose the decision threshold of the segmenter file ``model`` on ``data``'s ``split`` and write the
    calibrated copy to ``out``. Returns the threshold and the objective at every grid value."""
    from .promptnet import PromptSegmenter, load_promptunet, save_promptunet
    from .table3 import REGIONS, _tumour_subjects

    model, out = Path(model), Path(out)
    if out.resolve() == model.resolve():
        raise MedtransError("the calibrated copy would overwrite its source; give another --out", out)
    grid = sorted({float(g) for g in grid})
    if not grid or not all(math.isfinite(g) for g in grid):
        raise MedtransError(f"the threshold grid must hold finite numbers, got {grid}")
    net, meta = load_promptunet(model)
    net.decision_threshold = 0.0
    seg = PromptSegmenter(net, name=model.stem, weights=model)
    ds, truths = _tumour_subjects(load_dataset(data), split)
    contrasts = [c for c in contrasts if all(c in s.images for s in ds.subjects)]
    if not contrasts:
        raise MedtransError(f"the subjects of split {split!r} lack every contrast asked for", ds.root)
    cells = _cells(contrasts)
    scores: dict[tuple[str, str], list[np.ndarray]] = {cell: [] for cell in cells}
    for subj in ds.subjects:
        labels, geom, _spacing = truths[subj.id]
        for contrast in contrasts:
            image = io.load(ds.path(subj.images[contrast]), modality=contrast)
            for c, region in cells:
                if c != contrast:
                    continue
                truth = np.isin(labels, REGIONS[region])
                if not truth.any():
                    continue
                _geom, logits = seg.logits_slices(image, prompts_from_mask(geom.to_frames(truth), mode="slices"))
                scores[(c, region)].append(np.array([dice(geom.to_volume(logits > t), truth) for t in grid]))
        log(f"{subj.id}: done")
    used = {cell: np.mean(v, axis=0) for cell, v in scores.items() if v}
    if not used:
        raise MedtransError(f"no region of {', '.join(contrasts)} appears on the subjects of split {split!r}", ds.root)
    objective = np.mean(list(used.values()), axis=0)
    best = float(grid[int(np.argmax(objective))])
    table = {float(t): float(v) for t, v in zip(grid, objective)}
    log("threshold  mean Dice  " + "  ".join(f"{c} {r}" for c, r in used))
    for i, t in enumerate(grid):
        log(f"{t:9g}  {objective[i]:.4f}     " + "  ".join(f"{v[i]:.4f}" for v in used.values()))
    meta = dict(meta)
    meta.pop("format", None)
    meta.pop("config", None)
    meta["threshold"] = repr(best)
    meta["calibration"] = json.dumps({
        "split": split, "subjects": [s.id for s in ds.subjects], "source": model.name,
        "cells": [f"{c} {r}" for c, r in used], "objective": "mean over cells of the mean Dice over subjects",
        "mean_dice": {repr(t): round(v, 5) for t, v in table.items()}})
    save_promptunet(net, out, meta)
    log(f"threshold {best:g}: mean Dice {table[best]:.4f} (at 0: {table.get(0.0, float('nan')):.4f}); "
        f"written to {out}")
    return best, table
