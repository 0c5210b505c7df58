"""Options that several `medtrans` subcommands share word for word."""

from __future__ import annotations

import argparse

__all__ = ["add_sampling_arguments"]


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """--device, --precision, --steps, --samples and --seed of the commands that translate a whole dataset
    (`evaluate`, `translate-dataset`)."""
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="inference precision (default: auto = bf16 on a GPU and on a CPU with native bf16, else fp32)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
