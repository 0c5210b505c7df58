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

A third oracle measures what knowing the tissue buys: *lookup given the true label*, a 256-bin T1 -> T2 table per
label of the phantom's label map (CSF, grey and white matter, oedema, enhancing rim, necrosis), fitted on the
training subjects and applied with each test subject's true labels. A model has to infer the tissue from context;
this oracle is handed it (and nothing else: no position, no neighbourhood).

Next to them the per-voxel lookup floor (fitted on the training subjects) and, optionally, a model's evaluation
folder, so the room left above a model can be read directly:

    python bench/ceiling.py data/bench [--target T2] [--source T1] [--model-dir data/bench/evaluation/<folder>]

Printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _regenerate(params: dict, target: str, *, registered: bool):
    from napari_medtrans.phantom import make_subject

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
