"""Options that several `medtrans` subcommands share word for word."""

from __future__ import annotations

import argparse

__all__ = ["add_sampling_arguments"]


def add_sampling_arguments(p: argparse.ArgumentParser, *, batch_size: bool = False) -> None:
    """--device, --precision (--batch-size), --steps, --samples and --seed: how the engine runs a model, for every
    command that translates (`translate`, `evaluate`, `translate-dataset`)."""
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps (default: auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="inference precision (default: auto = bf16 on a GPU and on a CPU with native bf16, else fp32)")
    if batch_size:
        p.add_argument("--batch-size", default="auto", help="slices per batch (default: auto)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps for diffusion models (default: the model's)")
    p.add_argument("--samples", type=int, default=1,
                   help="repeat stochastic models N times: the output is their mean, their spread a std map")
    p.add_argument("--seed", type=int, default=0, help="random seed for stochastic models (default: 0)")
