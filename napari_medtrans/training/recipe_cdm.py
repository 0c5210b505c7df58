"""Training recipe of CDM (Xing et al., MICCAI 2024): three stages, one run each, MRM -> MDN -> C-UNet.

One recipe, ``"cdm"``, with the option ``stage``; every stage is a separate run of the generic trainer that
starts from the previous stage's checkpoint (option ``init``) and trains one network, the others frozen:

1. ``stage="mrm"``: random patches of each target modality are masked (``mask_ratio``), FE and FD restore them;
   Eq. 1: the mean over the masked patches of each patch's squared error (:func:`masked_patch_loss`).
2. ``stage="mdn"``: ``y_0 = FE(Y)`` of the unmasked targets (FE frozen), ``y_t`` from Eq. 2 at a uniform random
   ``t``, the MDN regresses ``y_0`` under an L2 (mean squared error) loss.
3. ``stage="cunet"``: Eq. 4, the mean squared error of the C-UNet's output against the targets, the C-UNet guided
   by ``y_0 = FE(Y)`` (``condition="encoder"``, default) or by MDN samples (``condition="sampled"``, in
   ``sampled_steps`` steps, default the model's ``N_sampling``). For ablation M1 this is the only stage.

Each stage records in the recipe config (and so in the checkpoint's ``training["recipe"]``) the stages its
weights have been through (``stages``). A stage refuses to start unless the earlier stages are in the ``init``
checkpoint (``require_previous=False`` lifts that, e.g. for a model trained stage by stage in one Python
session). ``init`` must hold a CDM of the same configuration; its weights are loaded when the trainer builds the
run (a resumed run then continues from its own training state).

Optimiser (Sec. 3.1): Adam, learning rate 1e-4, "decay rate 1e-5" read as weight decay (AdamW). The paper's
"cross-entropy loss" contradicts Eq. 1 and 4 and is not used. The trainer validates with ``translate`` (the whole
pipeline); during the first two stages those numbers show an untrained C-UNet, so ``--val-every 0`` saves time.

Example (the CLI options ``--preset``, ``--stage`` and ``--init`` are requested from the train CLI)::

    medtrans train --method cdm --preset cpu --inputs T1 T2 --outputs T1c FLAIR --stage mrm --data D --out runs/mrm
    medtrans train ... --stage mdn   --init runs/mrm/model.safetensors --out runs/mdn
    medtrans train ... --stage cunet --init runs/mdn/model.safetensors --out runs/cdm
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..core.errors import MedtransError, UnknownChoiceError
from ..translators.base import Translator
from ..translators.cdm import STAGES, TRAIN_CONDITIONS, CdmTranslator
from .recipes import OptimizerSpec, RecipeParts, load_init, register_recipe

__all__ = ["CONDITION_INITS", "CdmRecipe", "masked_patch_loss"]

#: How a fresh C-UNet stage starts the distribution branches (the recipe's ``condition_init``).
CONDITION_INITS = ("random", "zero")


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``(1/|R|) sum_{r in R} ||p_r - p_hat_r||^2``, each patch's mean squared error, over the masked patches.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``[B, C, H, W]``: restored and original targets (one channel per modality).
    mask : torch.Tensor
        ``[B, C, H/p, W/p]``, True (or 1) where the patch of side ``p`` of that modality was masked.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f'Arguments "pred" and "target" must be [B, C, H, W] tensors of one shape, got '
                         f"{list(pred.shape)} and {list(target.shape)}.")
    b, c, h, w = pred.shape
    if mask.ndim != 4 or tuple(mask.shape[:2]) != (b, c):
        raise ValueError(f'Argument "mask" must have shape [{b}, {c}, H/p, W/p], got {list(mask.shape)}.')
    gh, gw = mask.shape[-2:]
    if gh < 1 or gw < 1 or h % gh or w % gw or h // gh != w // gw:
        raise ValueError(f'Argument "mask" ({gh}x{gw} patches) does not tile {h}x{w} slices into square patches.')
    per_patch = F.avg_pool2d((pred - target) ** 2, h // gh)  # every patch's mean squared error
    m = mask.to(per_patch.dtype)
    n = m.sum()
    if float(n) == 0:
        raise ValueError('Argument "mask" masks no patch: Eq. 1 averages over the masked patches.')
    return (per_patch * m).sum() / n


@register_recipe("cdm")
class CdmRecipe:
    """CDM, one stage per run: ``stage="mrm"`` (Eq. 1), ``"mdn"`` (Eq. 2, L2) or ``"cunet"`` (Eq. 4).

    Parameters
    ----------
    stage : {"mrm", "mdn", "cunet"}
        The network this run trains; the others are frozen.
    init : path-like, optional
        Checkpoint of the previous stage (``OUT/model.safetensors`` of its run) to start from.
    require_previous : bool
        Refuse a stage whose earlier stages are not recorded in ``init`` (default True).
    mask_ratio : float
        Fraction of masked patches per modality in stage "mrm" (0.6, SimMIM's).
    condition : {"encoder", "sampled"}
        What guides the C-UNet in stage "cunet": ``FE(Y)`` or MDN samples.
    sampled_steps : int, optional
        MDN steps for ``condition="sampled"`` (default: the model's ``N_sampling``).
    weight_decay : float
        AdamW weight decay (the paper's "decay rate", 1e-5).
    condition_init : {"random", "zero"}
        How the C-UNet stage starts the distribution branch of every Condition Embedding (the paper is silent).
        "random" (default; the tables of docs/results were made with it): the last Linear layer keeps its random
        init, so from the first step ``y_0`` adds a random per-slice bias to every scale's features. "zero": that
        layer starts at zero (as DiT's adaLN-Zero and ControlNet's zero convolutions start a new condition), so the
        C-UNet starts as the unconditioned U-Net of ablation M1 and the condition enters as training finds it
        useful; its gradient is not zero (the hidden layer's activations are not), so it does enter. Only a fresh
        stage "cunet" run is touched (a resumed run loads its own weights).
    """

    name = "cdm"
    default_lr = 1e-4

    def __init__(self, *, stage: str = "cunet", init: str | os.PathLike | None = None, require_previous: bool = True,
                 mask_ratio: float = 0.6, condition: str = "encoder", sampled_steps: int | None = None,
                 weight_decay: float = 1e-5, condition_init: str = "random"):
        if stage not in STAGES:
            raise UnknownChoiceError("CDM training stage", str(stage), STAGES)
        if condition not in TRAIN_CONDITIONS:
            raise UnknownChoiceError("C-UNet training condition", str(condition), TRAIN_CONDITIONS)
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ValueError(f'Argument "mask_ratio" must be in (0, 1), got {mask_ratio!r}.')
        if sampled_steps is not None and (isinstance(sampled_steps, bool) or int(sampled_steps) != sampled_steps
                                          or sampled_steps < 1):
            raise ValueError(f'Argument "sampled_steps" must be a positive integer, got {sampled_steps!r}.')
        if float(weight_decay) < 0:
            raise ValueError(f'Argument "weight_decay" must be >= 0, got {weight_decay!r}.')
        if condition_init not in CONDITION_INITS:
            raise UnknownChoiceError("C-UNet condition init", str(condition_init), CONDITION_INITS)
        self.stage = stage
        self.init = None if init is None else Path(init)
        self.require_previous = bool(require_previous)
        self.mask_ratio = float(mask_ratio)
        self.condition = condition
        self.sampled_steps = None if sampled_steps is None else int(sampled_steps)
        self.weight_decay = float(weight_decay)
        self.condition_init = condition_init
        self.config: dict[str, Any] = {
            "stage": stage, "init": None if init is None else str(init), "init_sha256": None,
            "require_previous": self.require_previous, "mask_ratio": self.mask_ratio, "condition": condition,
            "sampled_steps": self.sampled_steps, "weight_decay": self.weight_decay, "stages": None,
        }
        if condition_init != "random":  # recorded when it departs from the default, so older records stay equal
            self.config["condition_init"] = condition_init

    # -- build -------------------------------------------------------------------------------------------
    def _load_init(self, model: CdmTranslator) -> list[str]:
        """Load ``init`` into ``model``; returns the stages recorded in it."""
        info = load_init(model, self.init, "cdm")
        self.config["init_sha256"] = info.sha256
        recipe = info.training.get("recipe") if isinstance(info.training, dict) else None
        stages = recipe.get("stages") if isinstance(recipe, dict) else None
        return [s for s in stages if s in STAGES] if isinstance(stages, list) else []

    def build(self, model: Translator) -> RecipeParts:
        """Load ``init``, check the stage order, freeze every network but this stage's; one optimiser."""
        if not isinstance(model, CdmTranslator):
            method = getattr(getattr(model, "spec", None), "method", type(model).__name__)
            raise TypeError(f"the cdm recipe trains a CDM translator, not {method!r}")
        trained = model.stage_module(self.stage)
        previous = self._load_init(model) if self.init is not None else []
        if model.condition and self.require_previous:
            missing = [s for s in STAGES[:STAGES.index(self.stage)] if s not in previous]
            if missing:
                where = (f"the checkpoint {self.init} has been through {previous or 'no stage'}"
                         if self.init is not None else "no init checkpoint was given")
                raise MedtransError(
                    f"CDM stage {self.stage!r} trains after stage(s) {', '.join(missing)}, but {where}; pass "
                    f"init=<OUT/model.safetensors of the {missing[-1]!r} run> (or require_previous=False to train "
                    "the weights as they are)", self.init)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in trained.parameters():
            p.requires_grad_(True)
        if self.stage == "cunet" and self.condition_init == "zero" and model.condition:
            with torch.no_grad():
                for ce in model.cunet.embed:
                    ce.distribution[-1].weight.zero_()
                    ce.distribution[-1].bias.zero_()
        self.config["stages"] = [s for s in STAGES if s in previous or s == self.stage]
        return RecipeParts({}, {"model": OptimizerSpec(("model",), weight_decay=self.weight_decay)})

    # -- one step ----------------------------------------------------------------------------------------
    def training_step(self, batch, model, modules, ctx) -> dict[str, torch.Tensor]:
        x, y = batch["input"], batch["target"]
        with ctx.autocast():
            out = model(x, target=y, stage=self.stage, mask_ratio=self.mask_ratio, condition=self.condition,
                        steps=self.sampled_steps)
        if self.stage == "mrm":
            loss = masked_patch_loss(out["pred"].float(), y.float(), out["mask"])  # Eq. 1
            losses = {"l_mrm": loss.detach()}
        elif self.stage == "mdn":
            loss = F.mse_loss(out["pred"].float(), out["y0"].float())  # L2 on the restored y_0
            losses = {"l_mdn": loss.detach()}
        else:
            pred = out["pred"].float()
            loss = F.mse_loss(pred, y.float())  # Eq. 4
            names = getattr(getattr(model, "module", model), "spec").outputs
            losses = {f"mse_{m}": F.mse_loss(pred[:, c], y[:, c].float()).detach() for c, m in enumerate(names)}
        ctx.optimise("model", loss)
        return {"loss": loss.detach(), **losses}
