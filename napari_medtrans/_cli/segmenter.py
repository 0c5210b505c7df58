"""`medtrans segmenter`: train the project's promptable segmenter (promptunet) on a dataset's tumour labels."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

NAME = "segmenter"
HELP = "train the promptable tumour segmenter that works without SAM2/MedSAM2 weights"
DESCRIPTION = """\
Train the compact promptable U-Net (napari_medtrans.segment.promptnet) on the tumour labels of a dataset's
training subjects: boxes, clicks and propagation priors on whole tumour, tumour core and enhancing rim, on every
contrast. Running the same command again continues from OUT/state.pt. The model is OUT/model.safetensors; the
shipped one is resources/segmenters/promptunet-phantom.safetensors (its card says how it was made).

`calibrate` chooses the decision threshold (the mask is logits > it) on the validation subjects with Table III's
box prompts and writes a copy of the file that carries it.

examples:
  medtrans segmenter train --data data/bench --out runs/promptunet --steps 3000 --threads 1
  medtrans segmenter calibrate --model runs/promptunet/model.safetensors --data data/bench \
      --out runs/promptunet/calibrated.safetensors
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train (or continue training) on a dataset")
    t.add_argument("--data", required=True, type=Path, help="dataset folder or manifest with tumour labels")
    t.add_argument("--out", required=True, type=Path, help="output folder (state.pt, model.safetensors)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--crop", type=int, default=96, help="square training crop in pixels (default 96)")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--width", type=int, default=16)
    t.add_argument("--depth", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    t.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto",
                   help="auto: bf16 autocast where the CPU has native bf16")
    t.add_argument("--checkpoint-every", type=int, default=250)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--init", type=Path, default=None,
                   help="start from this segmenter file's weights (e.g. the shipped one) with a new schedule")
    t.add_argument("--whole-contrasts", nargs="+", default=None, metavar="MOD",
                   choices=["T1", "T2", "FLAIR", "T1c", "PD"],
                   help="contrasts the whole-tumour examples come from (default: T2 FLAIR PD, where the oedema "
                        "shows)")
    t.add_argument("--gamma", nargs=2, type=float, default=None, metavar=("LO", "HI"),
                   help="range of the random gamma augmentation (default 0.7 1.5)")
    t.add_argument("--brightness", nargs=2, type=float, default=None, metavar=("LO", "HI"),
                   help="range of the random intensity scale (default 0.85 1.15; 1 1 keeps the window's levels)")
    t.add_argument("--snapshots", action="store_true",
                   help="also write the weights of every checkpoint as OUT/step-NNNNNN.safetensors")
    c = sub.add_parser("calibrate", help="choose the decision threshold on validation subjects; write a copy")
    c.add_argument("--model", required=True, type=Path, help="segmenter file (e.g. OUT/model.safetensors)")
    c.add_argument("--data", required=True, type=Path, help="dataset folder or manifest with tumour labels")
    c.add_argument("--out", required=True, type=Path, help="the calibrated copy (not the source)")
    c.add_argument("--split", default="val", help="subjects to calibrate on (default val)")
    c.add_argument("--contrasts", nargs="+", default=["FLAIR", "T2", "T1c"], metavar="MOD",
                   help="contrasts to segment (default FLAIR T2 T1c, Table III's)")
    c.add_argument("--grid", nargs="+", type=float, default=None, metavar="T",
                   help="thresholds to try (default -1 to 4 in steps of 0.25)")
    c.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")


def _range(values, option: str = "--gamma") -> tuple[float, float]:
    lo, hi = (float(v) for v in values)
    if not 0 < lo <= hi:
        from ..core.errors import MedtransError

        raise MedtransError(f"{option} needs 0 < LO <= HI, got {lo} {hi}")
    return lo, hi


def run(args: argparse.Namespace) -> int:
    if args.action == "calibrate":
        return _calibrate(args)
    from ..segment.train import SegTrainConfig, train_segmenter

    cfg = SegTrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                         min_lr=args.lr / 100, width=args.width, depth=args.depth, seed=args.seed,
                         threads=args.threads, amp=args.amp, checkpoint_every=args.checkpoint_every,
                         log_every=args.log_every, snapshots=args.snapshots,
                         init=None if args.init is None else str(args.init),
                         whole_contrasts=None if args.whole_contrasts is None else tuple(args.whole_contrasts),
                         **({} if args.gamma is None else {"gamma": _range(args.gamma)}),
                         **({} if args.brightness is None else
                            {"brightness": _range(args.brightness, "--brightness")}))
    # The command that repeats this run, from the parsed options (sys.argv is another program's when main() is
    # called in-process).
    parts = ["medtrans", "segmenter", "train"]
    for key, value in sorted(vars(args).items()):
        if key.startswith("_") or key in ("command", "action") or value is None or value is False:
            continue
        if value is True:
            parts.append("--" + key.replace("_", "-"))
            continue
        if args.init is not None and key in ("width", "depth"):
            continue  # --init's file decides them; the training record holds the values used
        parts += ["--" + key.replace("_", "-"), *(map(str, value) if isinstance(value, list) else [str(value)])]
    command = shlex.join(parts)
    train_segmenter(args.data, args.out, cfg, command=command, log=lambda s: print(s, flush=True))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import torch

    from ..segment.calibrate import DEFAULT_GRID, calibrate_threshold

    torch.set_num_threads(max(1, int(args.threads)))
    calibrate_threshold(args.model, args.data, args.out, split=args.split, contrasts=args.contrasts,
                        grid=DEFAULT_GRID if args.grid is None else args.grid, log=lambda s: print(s, flush=True))
    return 0
