"""Fixtures shared by the recipe tests of tests/training."""

import contextlib

import pytest
import torch

from napari_medtrans.training.step_context import frozen_parameters


class AdamStepContext:
    """The part of the trainer's step context a recipe uses, with Adam per named optimiser."""

    def __init__(self, model, parts, lr=2e-3):
        self.device = torch.device("cpu")
        self.step = 0
        mods = dict(parts.modules, model=model)
        self.mods = mods
        self.opts = {name: torch.optim.Adam([p for m in spec.modules for p in mods[m].parameters()], lr=lr,
                                            betas=spec.betas)
                     for name, spec in parts.optimizers.items()}
        self.calls = []

    def autocast(self):
        return contextlib.nullcontext()

    def optimise(self, name, loss):
        self.calls.append(name)
        opt = self.opts[name]
        opt.zero_grad()
        loss.backward()
        opt.step()

    def frozen(self, name):
        return frozen_parameters(self.mods[name])


@pytest.fixture
def step_ctx():
    """Factory: ``step_ctx(model, parts)`` builds an :class:`AdamStepContext`."""
    return AdamStepContext
