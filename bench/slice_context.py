"""Probe: does a T1 -> T2 U-Net gain from the neighbouring slices (2.5-D input)? Prepares the two things a run of
``medtrans train`` needs to answer it without new code in the package (docs/results/benchmark-t1-t2.md):

* ``dataset SRC DST``: a copy of dataset SRC (every file linked, nothing copied) whose subjects also hold
  ``SLm`` and ``SLp``: the T1 moved by one slice down and up along its acquisition axis (the edge slice repeated).
  The two files carry no contrast name, so the engine takes them as whatever a model asks for.
* ``init MODEL OUT``: a U-Net checkpoint with inputs ``SLm T1 SLp`` made from the T1 -> T2 U-Net MODEL: its first
  convolution's weights on T1, zeros on the neighbours, every other weight and the intensity statistics copied. It
  translates exactly as MODEL does until training gives the neighbours weight.

    python bench/slice_context.py dataset data/bench data/bench25
    python bench/slice_context.py init resources/models/demo-t1-t2.safetensors runs/init25.safetensors
    medtrans train --method unet --data data/bench25 --inputs SLm T1 SLp --outputs T2 ... \\
        --recipe-option init=runs/init25.safetensors
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

NEIGHBOURS = (("SLm", -1), ("SLp", 1))


def make_dataset(src: Path, dst: Path) -> int:
    import numpy as np

    from napari_medtrans.core import io
    from napari_medtrans.core.preprocess import acquisition_axis
    from napari_medtrans.core.volume import Volume

    src = src.resolve()
    manifest = json.loads((src / "dataset.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    for subject in manifest["subjects"]:
        sid = subject["id"]
        folder = dst / sid
        folder.mkdir(exist_ok=True)
        for f in (src / sid).iterdir():
            if not (folder / f.name).exists():
                (folder / f.name).symlink_to(f)
        t1 = io.load(src / subject["images"]["T1"])
        axis = acquisition_axis(t1)
        n = t1.data.shape[axis]
        for name, shift in NEIGHBOURS:
            index = np.clip(np.arange(n) + shift, 0, n - 1)
            io.write_nifti(Volume(np.take(t1.data, index, axis=axis), t1.affine), folder / f"{name}.nii.gz")
            subject["images"][name] = f"{sid}/{name}.nii.gz"
    (dst / "dataset.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {dst}: {len(manifest['subjects'])} subjects with {', '.join(n for n, _ in NEIGHBOURS)}")
    return 0


def make_init(model_path: Path, out: Path) -> int:
    import torch

    from napari_medtrans.translators import create_translator
    from napari_medtrans.translators.checkpoint import load_translator
    from napari_medtrans.translators.checkpoint_save import save_checkpoint

    src = load_translator(model_path).eval()
    if src.spec.method != "unet" or list(src.spec.inputs) != ["T1"]:
        raise SystemExit(f"{model_path}: a U-Net with the single input T1 is needed, got {src.spec.method} "
                         f"{list(src.spec.inputs)}")
    config = {k: v for k, v in src.config.items() if k not in ("inputs", "outputs")}
    inputs = [NEIGHBOURS[0][0], "T1", NEIGHBOURS[1][0]]
    dst = create_translator("unet", inputs=inputs, outputs=list(src.spec.outputs), **config).eval()
    state = src.state_dict()
    for key, value in dst.state_dict().items():
        if state[key].shape != value.shape:  # the first convolution: T1 in the middle, the neighbours at zero
            grown = torch.zeros_like(value)
            grown[:, 1:2] = state[key]
            state[key] = grown
    dst.load_state_dict(state, strict=True)
    norm = copy.deepcopy(getattr(src, "normalisation", None))
    if norm:
        norm["inputs"] = {name: norm["inputs"]["T1"] for name in inputs}
        norm["n_volumes"] = {**{name: norm["n_volumes"]["T1"] for name in inputs},
                             **{k: v for k, v in norm["n_volumes"].items() if k != "T1"}}
    x = torch.rand(1, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        same = (src.translate(x).image - dst.translate(torch.cat([torch.rand_like(x), x, torch.rand_like(x)], 1)).image)
    print(f"largest difference to {model_path.name} with random neighbours: {float(same.abs().max()):.3g}")
    save_checkpoint(dst, out, normalisation=norm)
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dataset", help="link a dataset and add the T1's neighbouring slices as SLm and SLp")
    d.add_argument("src", type=Path)
    d.add_argument("dst", type=Path)
    i = sub.add_parser("init", help="a 3-input U-Net that starts as the given T1 -> T2 U-Net")
    i.add_argument("model", type=Path)
    i.add_argument("out", type=Path)
    args = p.parse_args(argv)
    if args.what == "dataset":
        return make_dataset(args.src, args.dst)
    return make_init(args.model, args.out)


if __name__ == "__main__":
    sys.exit(main())
