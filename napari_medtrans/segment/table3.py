"""EDTS-Trans Table III on a dataset: does a segmenter see the same tumour on a synthetic image as on the real one?

``medtrans table3 --data data/bench`` runs :func:`run_table3` and writes ``docs/results/edts-table3.md``.

Protocol (EDTS-Trans Sec. 4.3, Table III: a promptable segmenter on real and synthetic BraTS images)
---------------------------------------------------------------------------------------------------
* Images: every shipped translator (``resources/models``) translates the subjects of the split that have tumour
  labels (``medtrans evaluate``'s output folders are shared, so volumes already made are reused); each output
  contrast is segmented on the real image and on the synthetic one.
* Regions (BraTS): whole tumour (oedema + enhancing rim + necrosis: the project's labels 4, 5, 6), tumour core
  (5, 6), enhancing tumour (5).
* Prompts: from the ground truth, the same for the real and the synthetic image: a box around the region on
  every slice where it appears, each slice segmented on its own (the paper segments 2-D slices). A box cannot say
  which compartment is meant where the boxes of two coincide (core and enhancing rim share theirs), so the core
  and enhancing rows measure what the image shows inside that box.
* Scores, per subject: Dice of the 3-D mask and HD95 in mm (:func:`napari_medtrans.core.metrics.hd95`; n/a when
  the segmenter found nothing), against the ground truth; the table gives mean +- SD over subjects and the gap
  (synthetic minus real, per subject, then averaged).
* Segmenters: the shipped ``promptunet-phantom`` and every SAM2 / MedSAM2 model whose weights are in the store.
* Work: on the CPU, ``jobs`` worker processes of one thread each (default: the machine's cores) translate with
  the translators in parallel, then segment the subjects in parallel; the rows are the same as with one job.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core import io
from ..core.dataset import Dataset, load_dataset
from ..core.errors import MedtransError
from ..core.metrics import dice, hd95
from ..core.weights import resources_dir
from .frames import FrameGeometry
from .models import MODELS, SHIPPED, weights_available
from .prompts import prompts_from_mask

__all__ = ["REGIONS", "Table3Row", "shipped_translators", "available_segmenters", "default_jobs", "run_table3",
           "format_table3"]

#: BraTS regions as the project's label values.
REGIONS = {"whole tumour": (4, 5, 6), "tumour core": (5, 6), "enhancing tumour": (5,)}


@dataclasses.dataclass
class Table3Row:
    """One subject, image and region: Dice and HD95 of the real image's mask and of the synthetic one's."""

    segmenter: str
    translator: str
    direction: str
    subject: str
    region: str
    dice_real: float
    dice_synthetic: float
    hd95_real: float
    hd95_synthetic: float


def shipped_translators() -> list[Path]:
    """The translator checkpoints shipped in resources/models, sorted by name."""
    return sorted((resources_dir() / "models").glob("*.safetensors"))


def available_segmenters() -> list[str]:
    """The shipped segmenter and every SAM2 / MedSAM2 model whose weights are in the store."""
    return [SHIPPED] + [n for n in MODELS if n != SHIPPED and weights_available(n)]


def _truth(ds: Dataset, subj) -> tuple | None:
    """A subject's (labels, frame geometry, spacing), or None when it has no tumour labels."""
    if not subj.labels:
        return None
    lab = io.load(ds.path(subj.labels))
    labels = np.rint(ds.convert_labels(lab.data, ds.path(subj.labels)))
    if not np.isin(labels, REGIONS["whole tumour"]).any():
        return None
    return labels, FrameGeometry.of(lab), lab.spacing


def _subset(ds: Dataset, ids: Sequence[str]) -> Dataset:
    """The dataset's subjects ``ids``, in that order."""
    by_id = {s.id: s for s in ds.subjects}
    return Dataset(ds.root, [by_id[i] for i in ids], name=ds.name, label_scheme=ds.label_scheme)


def _tumour_subjects(ds: Dataset, split: str) -> tuple[Dataset, dict[str, tuple]]:
    """The subjects of ``split`` with tumour labels, and each one's (labels, frame geometry, spacing), read once."""
    truths = {subj.id: t for subj in ds.split(split) if (t := _truth(ds, subj)) is not None}
    if not truths:
        raise MedtransError(f"no subject of split {split!r} has tumour labels (4, 5, 6)", ds.root)
    return _subset(ds, list(truths)), truths


def _score(segmenter, image, truth, prompts, spacing) -> tuple[float, float]:
    mask = segmenter.segment_slices(image, prompts).mask
    return float(dice(mask, truth)), hd95(mask, truth, spacing=spacing)


def _translate_model(path: str, data: str, ids: list[str], device: str, prec: str, threads: int | None,
                     log: Callable[[str], None] | None = None) -> list[tuple[str, str, str, Path]]:
    """One translator over the subjects ``ids`` (a worker of :func:`run_table3`)."""
    from ..training.evaluate import evaluation_dir, translate_dataset
    from ..translators.checkpoint import read_checkpoint_metadata

    log = log or _print
    _set_threads(threads)
    ds = load_dataset(data)
    sub = _subset(ds, ids)
    path = Path(path)
    info = read_checkpoint_metadata(path)
    out = evaluation_dir(ds.root, path, prec)
    log(f"translating with {path.name} ({info.method}) into {out}")
    return [(path.stem, direction, subject, syn)
            for subject, direction, _modality, syn in translate_dataset(path, sub, out, device=device,
                                                                         precision=prec, log=log)]


def _segment_images(seg_name: str, data: str, images: list[tuple[int, str, str, str, Path]], device: str,
                    threads: int | None, total: int, truths: dict[str, tuple] | None = None,
                    log: Callable[[str], None] | None = None) -> list[tuple[int, Table3Row]]:
    """Segment the real and synthetic images of ``images`` (``(index, translator, direction, subject, path)``
    entries) with one segmenter, loaded once; the real image of a subject and contrast is segmented once. The
    subjects' labels come in ``truths`` or, in a worker process, are read here (only those of ``images``)."""
    from .segmenter import Segmenter

    log = log or _print
    _set_threads(threads)
    ds = load_dataset(data)
    sub = _subset(ds, list(dict.fromkeys(item[3] for item in images)))
    if truths is None:
        truths = {subj.id: _truth(ds, subj) for subj in sub.subjects}
    seg = Segmenter.from_name(seg_name, device=device)
    real_cache: dict[tuple, tuple[float, float]] = {}
    rows: list[tuple[int, Table3Row]] = []
    t0 = time.perf_counter()
    try:
        for n, translator, direction, subject_id, syn_path in images:
            subj = next(s for s in sub.subjects if s.id == subject_id)
            modality = direction.split("->")[1]
            labels, geom, spacing = truths[subject_id]
            # the real image is read and segmented once per subject and contrast, whatever the translators
            real = None if (subject_id, modality, "whole tumour") in real_cache else \
                io.load(sub.path(subj.images[modality]), modality=modality)
            synthetic = io.load(syn_path)
            for k, (region, values) in enumerate(REGIONS.items()):
                truth = np.isin(labels, values)
                prompts = prompts_from_mask(geom.to_frames(truth), mode="slices")
                key = (subject_id, modality, region)
                if key not in real_cache:
                    real_cache[key] = _score(seg, real, truth, prompts, spacing)
                d_syn, h_syn = _score(seg, synthetic, truth, prompts, spacing)
                rows.append((3 * n + k, Table3Row(seg_name, translator, direction, subject_id, region,
                                                  real_cache[key][0], d_syn, real_cache[key][1], h_syn)))
            log(f"[{seg_name} {n + 1}/{total}] {translator} {direction} {subject_id}: whole-tumour Dice real "
                f"{real_cache[(subject_id, modality, 'whole tumour')][0]:.3f}, synthetic "
                f"{rows[-3][1].dice_synthetic:.3f} ({time.perf_counter() - t0:.0f} s)")
    finally:
        seg.release()
    return rows


def _print(message: str) -> None:
    print(message, flush=True)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _sampling_steps(path: Path) -> int:
    from ..translators.checkpoint import read_checkpoint_metadata

    return int(read_checkpoint_metadata(path).spec.get("default_steps") or 0)


def default_jobs() -> int:
    """Worker processes for :func:`run_table3` by default: this machine's CPU cores, at most 8."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def run_table3(
    data,
    *,
    models: Sequence[str | Path] | None = None,
    segmenters: Sequence[str] | None = None,
    split: str = "test",
    device: str = "cpu",
    precision: str = "auto",
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[Table3Row]:
    """Translate, segment and score (see the module notes). Returns one row per subject, image and region.

    ``jobs`` > 1 on the CPU runs the translators, then the subjects' segmentations, in that many worker processes
    of one thread each (spawned; the rows and files are the same as with one job, in the same order). On a GPU,
    or with one job, everything runs in this process.
    """
    from ..translators.lookup import resolve_model
    from ..core.engine import resolve_device, resolve_precision

    ds = load_dataset(data)
    sub, truths = _tumour_subjects(ds, split)
    log(f"{len(sub.subjects)} subjects of split {split!r} with tumours: {', '.join(s.id for s in sub.subjects)}")
    model_paths = [resolve_model(m) for m in models] if models else shipped_translators()
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    jobs = max(1, int(jobs)) if str(dev) == "cpu" else 1
    root = str(ds.root)
    seg_names = list(segmenters or available_segmenters())

    if jobs == 1:
        def run_all(fn, calls):
            return [fn(*c, log=log) for c in calls]
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))

        def run_all(fn, calls):
            return [f.result() for f in [pool.submit(fn, *c) for c in calls]]
    threads = 1 if jobs > 1 else None
    ids = [s.id for s in sub.subjects]
    try:
        # the sampling translators (the slow ones) first, so that the pool's last tasks are short ones
        order = sorted(model_paths, key=_sampling_steps, reverse=True) if jobs > 1 else model_paths
        done = dict(zip(order, run_all(_translate_model, [(str(p), root, ids, device, prec, threads)
                                                          for p in order])))
        images = [item for p in model_paths for item in done[p]]
        indexed = [(n, *item) for n, item in enumerate(images)]
        # one task per worker, each with whole subjects (a subject's real images are segmented once); in one
        # process the labels read above are passed on, in workers each reads its own subjects'
        groups = [[item for item in indexed if ids.index(item[3]) % jobs == j] for j in range(jobs)]
        rows: list[Table3Row] = []
        for seg_name in seg_names:
            parts = run_all(_segment_images, [(seg_name, root, g, device, threads, len(images),
                                               truths if jobs == 1 else None) for g in groups if g])
            rows += [row for _, row in sorted((r for part in parts for r in part), key=lambda r: r[0])]
    finally:
        if jobs > 1:
            pool.shutdown(cancel_futures=True)  # after an error, the tasks not started are dropped
    return rows


def _mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """``mean +- SD`` of the defined values, ``(k n/a)`` for NaNs (HD95 of an empty mask); ``n/a`` if none."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    missing = len(values) - v.size
    if v.size == 0:
        return "n/a"
    text = f"{v.mean():.{digits}f} +- {v.std(ddof=1) if v.size > 1 else 0.0:.{digits}f}"
    return text + (f" ({missing} n/a)" if missing else "")


def format_table3(rows: Sequence[Table3Row]) -> str:
    """The markdown table: one line per segmenter, translator (direction) and region, mean +- SD over subjects."""
    lines = ["| segmenter | translator | image | region | n | Dice real | Dice synthetic | Dice gap | "
             "HD95 real (mm) | HD95 synthetic (mm) | HD95 gap (mm) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[Table3Row]] = {}
    for r in rows:
        groups.setdefault((r.segmenter, r.translator, r.direction, r.region), []).append(r)
    for (seg, tr, direction, region), rs in groups.items():
        gap_d = [r.dice_synthetic - r.dice_real for r in rs]
        gap_h = [r.hd95_synthetic - r.hd95_real for r in rs]
        lines.append(
            f"| {seg} | {tr} | {direction.replace('->', ' -> ')} | {region} | {len(rs)} | "
            f"{_mean_sd([r.dice_real for r in rs])} | {_mean_sd([r.dice_synthetic for r in rs])} | "
            f"{_mean_sd(gap_d)} | {_mean_sd([r.hd95_real for r in rs], 1)} | "
            f"{_mean_sd([r.hd95_synthetic for r in rs], 1)} | {_mean_sd(gap_h, 1)} |")
    return "\n".join(lines)


def write_rows_csv(rows: Sequence[Table3Row], path: str | Path) -> Path:
    """One line per subject, image and region."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[fl.name for fl in dataclasses.fields(Table3Row)])
        w.writeheader()
        for r in rows:
            w.writerow(dataclasses.asdict(r))
    return path


def write_report(rows: Sequence[Table3Row], path: str | Path, *, command: str, seconds: float,
                 notes: str = "", jobs: int = 1) -> Path:
    """docs/results/edts-table3.md: how to regenerate it, the protocol, the table; a ``## Discussion`` section a
    person wrote at the end of the file it replaces is kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subjects = sorted({r.subject for r in rows})
    text = [
        "# EDTS-Trans Table III on the benchmark: the same tumour on real and synthetic images?",
        "",
        "Regenerate (docs/benchmark.md makes `data/bench`):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"{len(subjects)} test subjects with tumours ({', '.join(subjects)}); made "
        f"{_dt.date.today().isoformat()} in {seconds / 60:.1f} min on this project's 2-core CPU machine"
        f"{f' ({jobs} worker processes)' if jobs > 1 else ''}.",
        "Protocol (`napari_medtrans/segment/table3.py`): every shipped translator's synthetic image and the real",
        "image of the same contrast are segmented with the same ground-truth box prompts, one box per slice where",
        "the region appears, each slice on its own; Dice of the 3-D mask and HD95 (mm) against the ground truth,",
        "mean +- SD over subjects; the gap is synthetic minus real, per subject. Regions: whole tumour (oedema,",
        "enhancing rim, necrosis), tumour core (rim and necrosis), enhancing tumour (rim).",
        "",
        format_table3(rows),
        "",
    ]
    if notes:
        text += [notes.rstrip(), ""]
    from ..training.ablation import with_discussion  # a person's "## Discussion" below the table is kept

    path.write_text(with_discussion("\n".join(text), path))
    return path
