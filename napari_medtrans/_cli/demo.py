"""`medtrans demo`: the built-in default job, end to end on a phantom subject."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "make a phantom subject, translate its T1 into a T2 with the shipped model, report metrics"
DESCRIPTION = """\
The built-in demo. Writes a held-out phantom subject with a tumour (T1, T2, FLAIR, PD, T1c, labels; the
benchmark phantom of docs/benchmark.md) to OUT, shows what
`medtrans info` sees, translates the T1 into a synthetic T2 with the shipped demo model, and prints PSNR, SSIM
and MAE against the phantom's real T2 inside the brain mask. Then, when a display is available, opens the
standalone app with the T1, the synthetic T2 (labelled SYNTHETIC) and the real T2 in linked panes.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default: ./demo-output)")
    p.add_argument("--seed", type=int, default=1000, help="phantom seed (default 1000: not a training subject)")
    p.add_argument("--device", default="auto")
    p.add_argument("--app", choices=["auto", "yes", "no"], default="auto",
                   help="open the result in medtrans-app (default auto: when a display is available)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core import io
    from ..core.engine import translate_volume
    from ..core.metrics import evaluate_volumes
    from ..phantom import make_subject
    from ..translators.checkpoint import load_translator
    from ..translators.lookup import demo_model_path
    from ._progress import TextProgress

    model_path = demo_model_path()
    translator = load_translator(model_path)
    card = getattr(translator, "checkpoint_info", None)
    shape = (card.training or {}).get("phantom_shape") if card else None
    subject = make_subject(args.seed, shape=tuple(shape) if shape else None, tumour=True,
                           subject_id=f"demo-{args.seed}")
    print(f"1. phantom subject with a tumour (seed {args.seed}, shape {subject.labels.shape}) -> {args.out}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, vol in subject.images.items():
        io.write_nifti(vol, args.out / f"{name}.nii.gz")
    io.write_nifti(subject.labels, args.out / "labels.nii.gz")
    t1 = io.load(args.out / "T1.nii.gz")
    print(f"2. loaded {t1!r}")
    print(f"3. translating T1 -> T2 with {translator.spec.method} ({model_path.name})")
    with TextProgress(translator.spec.method) as bar:
        result = translate_volume(t1, translator, device=args.device, progress=bar, seed=0)
    out = io.write_nifti(result.volume, args.out / "T2_synthetic.nii.gz")
    same = np.allclose(result.volume.affine, t1.affine)
    print(f"   wrote {out} on {result.device} in {result.seconds:.1f} s (affine kept: {same}, "
          f"marked synthetic: {result.volume.synthetic})")
    ref = subject.images["T2"]
    scores = evaluate_volumes(result.volume.data, ref.data, mask=subject.brain_mask.data > 0)
    print(f"4. against the real phantom T2 inside the brain mask: PSNR {scores['psnr']:.2f} dB, "
          f"SSIM {scores['ssim']:.4f}, MAE {scores['mae']:.4g}")
    return _open_app(args, [args.out / "T1.nii.gz", out, args.out / "T2.nii.gz"])


def _open_app(args: argparse.Namespace, paths: list[Path]) -> int:
    import os
    import sys

    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "win32", "darwin")
    if args.app == "no" or (args.app == "auto" and not has_display):
        print("5. no display here: open the result with  medtrans-app " + " ".join(str(p) for p in paths))
        return 0
    print("5. opening medtrans-app (T1 | SYNTHETIC T2 | real T2)")
    from medtrans_app.__main__ import main as app_main

    return int(app_main([str(p) for p in paths]) or 0)
