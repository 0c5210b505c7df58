"""The step context the :class:`~napari_medtrans.training.trainer.Trainer` offers a recipe during one step.

It gives the recipe the device, the step number, an autocast context for the run's mixed precision, one
optimisation step of a named optimiser (GradScaler, gradient clipping) and a way to freeze a module's
parameters for a while (see :class:`~napari_medtrans.training.recipes.StepContext`).
"""

from __future__ import annotations

import contextlib

import torch

from ..core.errors import UnknownChoiceError


class _Context:
    def __init__(self, trainer):
        self._t = trainer
        self.device = trainer.device
        self.step = 0

    def autocast(self):
        t = self._t
        if t.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=t.device.type, dtype=t.amp_dtype)

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        t = self._t
        if name not in t.optimizers:
            raise UnknownChoiceError("optimiser", name, list(t.optimizers))
        opt = t.optimizers[name]
        opt.zero_grad(set_to_none=True)
        if t.scaler is not None:
            t.scaler.scale(loss).backward()
            t.scaler.unscale_(opt)
        else:
            loss.backward()
        if t.grad_clip:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        if t.scaler is not None:
            t.scaler.step(opt)
        else:
            opt.step()

    def frozen(self, name: str):
        """``with ctx.frozen("discriminator") as d:``: the named module with its parameters frozen."""
        return frozen_parameters(self._t.raw_modules[name])


@contextlib.contextmanager
def frozen_parameters(module: torch.nn.Module):
    """Within the block ``module``'s parameters take no gradient (a GAN's generator loss through its
    discriminator); each gets back the ``requires_grad`` it had."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
