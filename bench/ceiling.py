"""How high any translator could score on the benchmark: the acquisition's own share of the error.

A model sees the source contrast only; the target it is scored against also carries its own noise and the rigid
misregistration the phantom draws between contrasts (``medtrans phantom``: sub-voxel to 1 mm, per contrast).
Neither can be predicted from the source. This script regenerates each test subject of a phantom dataset without
them (same seeds: every other random stream is the same) and scores, with `medtrans evaluate`'s protocol, two
oracles against the real target:

- *noise-free, as misregistered*: the target contrast exactly as drawn but without noise: the cost of the noise;
- *noise-free, registered to the source*: what a perfect model that reads the source would output; its error is
  the noise plus the misregistration, an upper bound for any translator (a model could only gain by blurring
  where it cannot know the shift; a per-subject Wiener blur is printed to bound that).

A third oracle bounds what any reader of the source can reach: *the source's reader* is the noise-free,
registered target regenerated with every random draw the phantom makes for the target's relaxation *independently*
of the source set to its mean: the per-subject T2 jitter (3 %), the fine T2 texture (7 %), the part of the smooth
T2 field that is not shared with T1 (its conditional mean given the T1 field is 0.4 times it), and the tumour's
T2 factor fields (rim 20 %, oedema 18 %, necrosis 15 %). Everything a source image could tell (T1 and PD fields,
anatomy, vessels, the tumour's shape) is kept, even what the source shows only faintly (a generous bound). Its
error is noise, misregistration and those T2-only draws: no translator that reads T1 alone can, in mean squared
error, do better than the conditional mean they are set to (log-normal draws at their median: within rounding of
it). Only for a T2 target.

A fourth oracle measures what knowing the tissue buys: *lookup given the true label*, a 256-bin T1 -> T2 table per
label of the phantom's label map (CSF, grey and white matter, oedema, enhancing rim, necrosis), fitted on the
training subjects and applied with each test subject's true labels. A model has to infer the tissue from context;
this oracle is handed it (and nothing else: no position, no neighbourhood).

Next to them the per-voxel lookup floor (fitted on the training subjects) and, optionally, a model's evaluation
folder, so the room left above a model can be read directly:

    python bench/ceiling.py data/bench [--target T2] [--source T1] [--model-dir data/bench/evaluation/<folder>] \
        [--write data/bench/evaluation/t1-reader]     # the T1-reader oracle's volumes, for bench/error_regions.py

Printed, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def _t2_draws_at_their_mean():
    """Regenerate with the T2-only random draws at their mean, every random stream unchanged (the draws are made,
    then replaced), so the anatomy, noise-free T1 fields and tumour are the same subject's."""
    from napari_medtrans.phantom import relaxation, subject

    jitter, smooth, texture, paint = (subject.jittered_tissues, relaxation._smooth_fields,
                                      relaxation._texture_fields, subject.paint_tumour)

    def jitter_mean(field, rng):
        out = jitter(field, rng)
        return {t: (v[0], relaxation.TISSUES[field][t][1], v[2], v[3]) for t, v in out.items()}

    def smooth_mean(rng, axes):
        a, b, c = smooth(rng, axes)
        # b = sd * (0.4 f_a + 0.92 f_b): its conditional mean given the T1 field a = sd_T1 f_a
        return a, (relaxation._SMOOTH_SHARED[0] * relaxation._SMOOTH_SD[1] / relaxation._SMOOTH_SD[0]) * a, c

    def texture_mean(rng, axes):
        t1, t2, pd = texture(rng, axes)
        return t1, np.zeros_like(t2), pd

    def paint_mean(*args, **kwargs):
        out = paint(*args, **kwargs)
        return {t: {k: (np.ones_like(v) if k == "t2" else v) for k, v in f.items()} for t, f in out.items()}

    subject.jittered_tissues, relaxation._smooth_fields = jitter_mean, smooth_mean
    relaxation._texture_fields, subject.paint_tumour = texture_mean, paint_mean
    try:
        yield
    finally:
        subject.jittered_tissues, relaxation._smooth_fields = jitter, smooth
        relaxation._texture_fields, subject.paint_tumour = texture, paint


def _regenerate(params: dict, target: str, *, registered: bool, t2_mean: bool = False):
    from napari_medtrans.phantom import make_subject

    if t2_mean:
        with _t2_draws_at_their_mean():
            return _regenerate(params, target, registered=registered)
    subj = make_subject(int(params["seed"]), shape=params.get("shape"), anatomy=params.get("anatomy", "mni152"),
                        snr=None, tumour=bool(params["tumour"]), registered=registered,
                        gibbs=params.get("gibbs_k_space_fraction"), mass_effect=params.get("mass_effect", True), contrasts=(target,))
    return subj.images[target].data


def _fit_label_lookup(ds, source: str, target: str, bins: int = 256) -> np.ndarray:
    """Mean target per (label, normalised source bin) over the training subjects' brain voxels; empty bins take
    the label's mean (or the global mean)."""
    from napari_medtrans.core import io
    from napari_medtrans.training.floors import _bin_index, normalised_input

    sums = np.zeros((7, bins))
    counts = np.zeros((7, bins))
    for s in ds.split("train"):
        x = normalised_input(io.load(ds.path(s.images[source])).data)
        y = io.load(ds.path(s.images[target])).data
        labels = io.load(ds.path(s.labels)).data.astype(np.int64)
        inside = (io.load(ds.path(s.mask)).data > 0) & (labels > 0) & (labels < 7)
        np.add.at(sums, (labels[inside], _bin_index(x[inside], bins)), y[inside])
        np.add.at(counts, (labels[inside], _bin_index(x[inside], bins)), 1)
    label_mean = sums.sum(1) / np.maximum(counts.sum(1), 1)
    glob = sums.sum() / counts.sum()
    table = np.where(counts > 0, sums / np.maximum(counts, 1), np.where(counts.sum(1, keepdims=True) > 0,
                                                                          label_mean[:, None], glob))
    return table


def _label_lookup(table: np.ndarray, source: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from napari_medtrans.training.floors import _bin_index, normalised_input

    out = np.zeros(source.shape, dtype=np.float32)
    lab = np.clip(labels.astype(np.int64), 0, 6)
    idx = _bin_index(normalised_input(source), table.shape[1])
    out[mask] = table[lab[mask], idx[mask]]
    return out


def main(argv=None) -> int:
    from scipy import ndimage

    from napari_medtrans.core import io
    from napari_medtrans.core.dataset import load_dataset
    from napari_medtrans.training.evaluate import evaluate_floors, output_path
    from napari_medtrans.training.protocols import get_protocol

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("--source", default="T1")
    p.add_argument("--target", default="T2")
    p.add_argument("--model-dir", type=Path, default=None, help="a `medtrans evaluate` output folder to compare")
    p.add_argument("--write", type=Path, default=None,
                   help="write the T1-reader oracle here in `medtrans evaluate`'s layout (for bench/error_regions.py)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N test subjects")
    args = p.parse_args(argv)

    proto = get_protocol("project")
    ds = load_dataset(args.data)
    subjects = [s for s in ds.subjects if s.split == "test"][: args.limit]
    table = _fit_label_lookup(ds, args.source, args.target)
    rows = []
    for s in subjects:
        params = json.loads((ds.root / s.id / "phantom.json").read_text())
        ref = io.load(ds.path(s.images[args.target]), modality=args.target)
        mask = io.load(ds.path(s.mask)).data > 0
        score = lambda img: proto.score(img, ref.data, mask, ref.affine)[0]["psnr"]  # noqa: E731
        as_drawn = _regenerate(params, args.target, registered=False)
        aligned = _regenerate(params, args.target, registered=True)
        # the best isotropic Gaussian blur of the registered oracle (the most a model could win where the shift is
        # unknown), searched on this subject: an optimistic bound
        blurred = max(score(ndimage.gaussian_filter(aligned, sigma)) for sigma in (0.0, 0.3, 0.5, 0.7, 1.0))
        row = {"subject": s.id, "tumour": bool(params["tumour"]), "noise only": score(as_drawn),
               "noise + misregistration": score(aligned), "best blur of it": blurred}
        labels = io.load(ds.path(s.labels)).data
        source = io.load(ds.path(s.images[args.source])).data
        if args.target == "T2":
            reader = _regenerate(params, args.target, registered=True, t2_mean=True)
            row["T1 reader (T2-only draws at mean)"] = score(reader)
            if args.write is not None:
                path = output_path(args.write, s.id, args.target)
                path.parent.mkdir(parents=True, exist_ok=True)
                io.save(ref.derive(reader, synthetic=True, provenance={"oracle": "T1 reader"}), path)
        row["lookup given the true label"] = score(_label_lookup(table, source, labels, mask))
        if args.model_dir is not None:
            path = output_path(args.model_dir, s.id, args.target)  # the checkpoint's own direction
            if not path.exists():
                path = output_path(args.model_dir, s.id, args.target, args.source)
            synth = io.load(path, modality=args.target)
            row["model"] = score(synth.data)
        rows.append(row)
        print(" ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    floors = evaluate_floors(ds, [f"{args.source}->{args.target}"], split="test")
    lookup = {r["subject"]: r["psnr"] for r in floors.rows if "lookup" in r["method"]}
    keys = [k for k in rows[0] if k not in ("subject", "tumour")]
    print(f"\n{args.source} -> {args.target}, {len(rows)} test subjects of {args.data} (PSNR dB, mean; "
          "tumour subjects / healthy)")
    for k in [*keys, "lookup floor"]:
        vals = [(r[k] if k != "lookup floor" else lookup.get(r["subject"], np.nan), r["tumour"]) for r in rows]
        allv = np.array([v for v, _ in vals])
        tum = np.array([v for v, t in vals if t])
        hea = np.array([v for v, t in vals if not t])
        print(f"  {k:<26} {np.nanmean(allv):6.2f}   {np.nanmean(tum) if tum.size else np.nan:6.2f} / "
              f"{np.nanmean(hea) if hea.size else np.nan:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
