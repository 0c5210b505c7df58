"""Does the tumour survive translation? Tumour vs white matter in synthetic and real volumes, per subject.

Reads the synthetic volumes ``medtrans evaluate`` wrote (``EVAL_DIR/<subject>/<MOD>_synthetic.nii.gz``, or
``<MOD>_from_<SRC>_synthetic.nii.gz`` for the reverse direction of a two-way model) and, from the dataset, the
real volume of that modality and the label map (3 WM; 4 oedema, 5 enhancing rim, 6 necrosis). Prints, per subject
with a tumour, the mean of the whole tumour (labels 4-6) and of WM in the real and the synthetic image, and the
issue 19 check: "inside the tumour the synthetic image is brighter than WM" (for T2) resp. darker (for T1, where
oedema and necrosis are dark), on every subject, as in the real image.

    python bench/tumour_contrast.py data/bench data/bench/evaluation/<model>-fp32 --modality T2
    python bench/tumour_contrast.py data/bench data/bench/evaluation/<model>-fp32 --modality T1 --source T2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_medtrans.core.io import load
from napari_medtrans.core.dataset import load_dataset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="dataset folder")
    ap.add_argument("evaluation", type=Path, help="folder medtrans evaluate wrote")
    ap.add_argument("--modality", default="T2")
    ap.add_argument("--source", default=None, help="source modality when the file is <MOD>_from_<SRC>_synthetic")
    ap.add_argument("--split", default="test")
    a = ap.parse_args(argv)
    ds = load_dataset(a.data)
    name = f"{a.modality}_from_{a.source}_synthetic.nii.gz" if a.source else f"{a.modality}_synthetic.nii.gz"
    brighter = a.modality in ("T2", "FLAIR", "PD")
    rows = []
    for s in sorted(ds.split(a.split), key=lambda s: s.id):
        path = a.evaluation / s.id / name
        if not path.exists():
            continue
        if not s.labels or a.modality not in s.images:
            continue
        labels = np.asarray(load(ds.path(s.labels)).data)
        tumour, wm = (labels >= 4) & (labels <= 6), labels == 3
        if not tumour.any():
            continue
        real = np.asarray(load(ds.path(s.images[a.modality])).data, dtype=np.float64)
        synth = np.asarray(load(path).data, dtype=np.float64)
        rows.append((s.id, real[tumour].mean() / real[wm].mean(), synth[tumour].mean() / synth[wm].mean()))
    if not rows:
        print(f"no synthetic {a.modality} of a subject with a tumour under {a.evaluation}", file=sys.stderr)
        return 2
    print(f"{'subject':10s} {'real tumour/WM':>15s} {'synthetic tumour/WM':>20s}")
    ok = 0
    for sid, r, y in rows:
        good = (y > 1) if brighter else (y < 1)
        ok += bool(good)
        print(f"{sid:10s} {r:15.3f} {y:20.3f}  {'ok' if good else 'LOST'}")
    word = "brighter" if brighter else "darker"
    print(f"tumour {word} than WM in the synthetic {a.modality}: {ok} of {len(rows)} subjects "
          f"(real: {sum((r > 1) if brighter else (r < 1) for _, r, _ in rows)} of {len(rows)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
