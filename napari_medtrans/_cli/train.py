"""`medtrans train`: train a translator on a dataset folder with the method's recipe."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NAME = "train"
HELP = "train a translator (pix2pix, unet, ...) on paired slices of a dataset folder"
DESCRIPTION = """\
Train a translator on the slices of a dataset (a folder with dataset.json or dataset.csv, e.g. one made by
`medtrans phantom`). Subjects of the "train" split are used for training, the "val" split for validation.
Checkpoints, the training state and logs (log.jsonl, log.csv) go to --out; running the same command again
continues from the last saved step (--no-resume starts afresh). The final model is OUT/model.safetensors.

Under torchrun the run uses one process per GPU (or CPU process with gloo); --batch-size is per process.

examples:
  medtrans train --method unet --data phantom/ --out runs/unet --width 16 --depth 4 --size 64 64 \\
      --lr 2e-3 --target-norm dataset --steps 10000 --val-every 1000 --val-max-slices 64
  medtrans train --method pix2pix --data phantom/ --out runs/p2p --width 16 --depth 7
  torchrun --nproc_per_node 4 -m napari_medtrans.cli train --method pix2pix --data brats/ --out runs/p2p
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="translator and recipe name, e.g. pix2pix or unet")
    p.add_argument("--data", required=True, type=Path, help="dataset folder or manifest (dataset.json / .csv)")
    p.add_argument("--out", required=True, type=Path, help="output folder (checkpoints, training state, logs)")
    p.add_argument("--inputs", nargs="+", default=["T1"], metavar="MOD", help="input modalities (default: T1)")
    p.add_argument("--outputs", nargs="+", default=["T2"], metavar="MOD", help="output modalities (default: T2)")
    g = p.add_argument_group("model")
    g.add_argument("--width", type=int, default=None, help="base channels (default: the method's, 64)")
    g.add_argument("--depth", type=int, default=None, help="U-Net levels (default: the method's)")
    g.add_argument("--norm", default=None, help="normalisation: batch, instance, group, layer, none")
    g.add_argument("--dropout", type=float, default=None, help="dropout probability (default: the method's)")
    g.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                   help="any other model option, e.g. --config preset=cpu mask=hard (values read as JSON when "
                        "they parse: numbers, true/false, [lists]; else as text)")
    g.add_argument("--recipe-option", nargs="+", default=[], metavar="KEY=VALUE",
                   help="training-recipe options, e.g. --recipe-option ssim_loss=false, or for CDM "
                        "stage=mdn init=runs/cdm-mrm/model.safetensors")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=2000, help="optimisation steps (default: 2000)")
    g.add_argument("--batch-size", type=int, default=8, help="slices per step and process (default: 8)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    g.add_argument("--min-lr", type=float, default=None, help="final learning rate of the cosine (default: the recipe's, else lr/100)")
    g.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (default: 0)")
    g.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip, 0 = off (default: 1)")
    g.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="mixed precision (default: auto = bf16/fp16 on CUDA, bf16 on a CPU with native bf16, else off)")
    g.add_argument("--loss", default=None, choices=["l1", "mse", "l1+mse"],
                   help="unet: pixel loss (default: l1)")
    g.add_argument("--lambda-l1", type=float, default=None, help="pix2pix: weight of the L1 term (default: 100)")
    g.add_argument("--gan-loss", default=None, choices=["vanilla", "lsgan"], help="pix2pix: adversarial loss "
                   "(default: vanilla = binary cross-entropy, as in the paper)")
    g = p.add_argument_group("data")
    g.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"),
                   help="pad training slices to H W, or crop them (at random places) when larger; validation "
                   "uses whole slices (default: pad to the model's size multiple)")
    g.add_argument("--axis", type=int, default=2, choices=[0, 1, 2], help="slicing axis of the voxel array (default: 2)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random flips and 90-degree rotations (default: on)")
    g.add_argument("--augment-set", default="dihedral", choices=["dihedral", "lr"],
                   help="with --augment: every flip and 90-degree rotation (dihedral), or flips along the "
                   "patient's left-right axis only (lr), which keep the anatomy's orientation, for data in one "
                   "standard orientation (default: dihedral)")
    g.add_argument("--target-norm", default="volume", choices=["volume", "dataset"],
                   help="normalise each target volume from its own robust range (volume), or all targets from "
                   "their median range, the one the checkpoint stores for mapping outputs back (dataset); "
                   "default: volume")
    g.add_argument("--min-foreground", type=float, default=0.05,
                   help="skip slices with less foreground than this fraction (default: 0.05)")
    g.add_argument("--num-workers", type=int, default=0, help="data loader processes (default: 0)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    g.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps (default: auto)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from OUT/training_state.pt when present (default: on)")
    g.add_argument("--val-every", type=int, default=250, help="validate every N steps, 0 = only at the end")
    g.add_argument("--val-max-slices", type=int, default=None, help="validate on at most N slices")
    g.add_argument("--checkpoint-every", type=int, default=250, help="save every N steps, 0 = only at the end")
    g.add_argument("--log-every", type=int, default=25, help="log every N steps (default: 25)")


def _fmt(row: dict) -> str:
    parts = [f"step {row['step']}", f"lr {row['lr']:.3g}"]
    parts += [f"{k} {v:.4g}" for k, v in row.items()
              if k not in ("event", "step", "epoch", "lr", "wall_time_s") and not k.startswith("val_")
              and isinstance(v, float)]
    val = [f"{k[4:]} {v:.4g}" for k, v in row.items() if k.startswith("val_") and isinstance(v, float)]
    if val:
        parts.append("| val " + " ".join(val))
    parts.append(f"| {row['wall_time_s']:.0f} s")
    return "  ".join(parts)


def _command(args: argparse.Namespace) -> str:
    """The command line that repeats this run (every option spelled out)."""
    import shlex

    parts = ["medtrans", "train"]
    for key, value in sorted(vars(args).items()):
        if key.startswith("_") or key == "command" or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            if value:  # an empty list is the option left out (a bare flag would not parse)
                parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _key_values(items: list[str], flag: str) -> dict:
    """Parse KEY=VALUE pairs; values are JSON when they parse (3, 1e-3, true, [1, 2]) and text otherwise."""
    import json

    from ..core.errors import MedtransError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MedtransError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def run(args: argparse.Namespace) -> int:
    import inspect

    import torch

    from ..core.dataset import load_dataset
    from ..core.errors import MedtransError, UnknownChoiceError
    from ..training.datasets import PairedSliceDataset, UnpairedSliceDataset
    from ..training.recipes import get_recipe, list_recipes
    from ..training.trainer import Trainer
    from ..translators.base import create_translator, translator_factory

    main = int(os.environ.get("RANK", "0")) == 0
    say = print if main else (lambda *a, **k: None)
    if args.method not in list_recipes():
        raise UnknownChoiceError("training method", args.method, list_recipes())
    if args.threads:
        torch.set_num_threads(args.threads)

    recipe_options = {}
    for flag, key, method in (("--loss", "loss", "unet"), ("--lambda-l1", "lambda_l1", "pix2pix"),
                              ("--gan-loss", "gan_loss", "pix2pix")):
        if getattr(args, key) is not None:
            if args.method != method:
                raise MedtransError(f"{flag} applies to {method}, not {args.method}")
            recipe_options[key] = getattr(args, key)
    recipe_options.update(_key_values(args.recipe_option, "--recipe-option"))
    try:
        recipe = get_recipe(args.method, **recipe_options)
    except TypeError as exc:
        raise MedtransError(f"the {args.method} recipe does not take these options: {exc}") from None
    required_norm = getattr(recipe, "target_norm", None)
    if required_norm is not None and args.target_norm != required_norm:
        # A two-way model translates either modality, and the engine normalises every input per volume: training
        # the target another way would teach it intensities it never meets at inference.
        raise MedtransError(f"the {args.method} recipe trains with --target-norm {required_norm} (both directions are "
                            f"normalised as the engine does at inference), not {args.target_norm}")

    config = {"inputs": args.inputs, "outputs": args.outputs}
    params = inspect.signature(translator_factory(args.method)).parameters
    if "inputs" not in params and "source" in params and "target" in params:
        # One-to-one translators (HiFi-Syn, DisDiff) name their direction source -> target.
        if len(args.inputs) != 1 or len(args.outputs) != 1:
            raise MedtransError(f"{args.method} translates one modality into another: give one --inputs and one "
                                f"--outputs, got {' '.join(args.inputs)} -> {' '.join(args.outputs)}")
        config = {"source": args.inputs[0], "target": args.outputs[0]}
    for key in ("width", "depth", "norm", "dropout"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    config.update(_key_values(args.config, "--config"))
    torch.manual_seed(args.seed)
    try:
        model = create_translator(args.method, **config)
    except TypeError as exc:
        raise MedtransError(f"method {args.method} does not take these options: {exc}") from None

    ds = load_dataset(args.data)
    common = dict(inputs=model.spec.inputs, outputs=model.spec.outputs, axis=args.axis,
                  size_multiple=model.spec.size_multiple, min_foreground=args.min_foreground)
    # Recipes that ask for them get unpaired slices and tissue labels (HiFi-Syn); the others paired slices.
    train_cls = UnpairedSliceDataset if getattr(recipe, "unpaired", False) else PairedSliceDataset
    extra = {"labels": True} if getattr(recipe, "needs_labels", False) else {}
    train_ds = train_cls(ds, "train", augment=args.augment and args.augment_set, size=tuple(args.size) if args.size else None,
                         target_norm=args.target_norm, **extra, **common)
    # Validation sees whole slices (padded to the size multiple), as the model will at inference, and targets
    # normalised as the training targets were.
    val_norm = train_ds.normalisation["outputs"] if args.target_norm == "dataset" else "volume"
    val_ds = PairedSliceDataset(ds, "val", target_norm=val_norm, **common) if ds.split("val") else None

    n_params = sum(p.numel() for p in model.parameters())
    say(f"training {args.method} {'+'.join(model.spec.inputs)} -> {'+'.join(model.spec.outputs)}: "
        f"{n_params / 1e6:.2f} M parameters, slices {train_ds.size[0]}x{train_ds.size[1]}")
    say(f"data {ds.root}: {len(train_ds)} {'unpaired ' if train_cls is UnpairedSliceDataset else ''}training "
        f"slices{' with tissue labels' if extra else ''} from {len(train_ds.subject_ids)} subjects, "
        + (f"{len(val_ds)} validation slices from {len(val_ds.subject_ids)} subjects" if val_ds
           else "no validation subjects (split 'val' is empty)"))
    say(f"output {args.out}")

    tty = sys.stderr.isatty()
    trainer = Trainer(
        recipe, model, train_ds, val_ds, out_dir=args.out, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, min_lr=args.min_lr, warmup=args.warmup, amp=args.amp, grad_clip=args.grad_clip or None,
        checkpoint_every=args.checkpoint_every, val_every=args.val_every, seed=args.seed,
        num_workers=args.num_workers, log_every=args.log_every, resume=args.resume, device=args.device,
        progress=tty, on_log=None if tty else (lambda row: say(_fmt(row), flush=True)),
        info={"command": _command(args), "data": str(Path(args.data).resolve()), "split": "train"},
        val_max_slices=args.val_max_slices,
    )
    result = trainer.fit()
    if result.resumed_from:
        say(f"resumed from step {result.resumed_from}")
    m = result.metrics
    if m:
        say("validation: " + "  ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float)))
    say(f"trained {result.step} steps in {result.wall_time_s:.0f} s")
    say(f"checkpoint: {result.checkpoint}")
    return 0
