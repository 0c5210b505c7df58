"""Training recipe of DisDiff (:mod:`napari_medtrans.translators.disdiff`): unpaired, two optimisers.

One step on an unpaired batch (``"input"`` slices of the source modality, ``"target"`` slices of the target
modality from other subjects):

1. forward pass (:meth:`DisDiffTranslator.forward_train`): backbone (Eq. 6-9), one diffusion level per image
   (Eq. 2-3), ``x_0`` predictions (Eq. 10) and fake ``x_{t-k}`` (Eq. 11);
2. discriminator step: modality discriminators, content discriminator (Eq. 7), time-conditioned discriminators
   with gradient penalty (Eq. 5);
3. encoder/generator step: backbone losses, Eq. 4 and the cycle loss Eq. 12.

Optimisers: Adam with betas (0.5, 0.9) and learning rate 1e-4 (Sec. 3.2).

Mechanisms. :meth:`DisDiffRecipe.build` settles every mechanism key the model's config leaves unset (None, which
builds what old checkpoints hold) to :data:`TRAINING_MECHANISMS`: the attribute modulates the generators (AdaIN)
and the diffusion module is conditioned on the cross translation in training and on the source image at
inference (see :mod:`napari_medtrans.translators.disdiff`). Set a key (``--config attr_injection=concat
diff_condition=cycle``) to train the old mechanisms (ablations).


Contrast prior (not in the paper). For the first ``prior_steps`` steps (400) the generator loss also pulls both
translations towards a rank-mapped pseudo-target, with a weight falling from ``prior_weight`` (10) to 0
(:mod:`.contrast_prior`): without it, which way the translation orders the tissues is a coin toss that most runs
lose (T1's order kept in T2 images). ``--recipe-option prior_steps=0`` trains as the paper does.
Normalisation: as for HiFi-Syn (:mod:`.recipe_hifisyn`), both modalities per volume (``target_norm``).
"""

from __future__ import annotations

import torch

from ..translators.base import Translator
from .recipe_hifisyn import ParameterGroup, TwoOptimizerRecipe
from .recipes import OptimizerSpec, RecipeParts, register_recipe

__all__ = ["DisDiffRecipe", "TRAINING_MECHANISMS"]

#: What :meth:`DisDiffRecipe.build` sets where the model's config leaves a mechanism unset.
TRAINING_MECHANISMS = {"attr_injection": "adain", "diff_condition": "cross"}


@register_recipe("disdiff")
class DisDiffRecipe(TwoOptimizerRecipe):
    """DisDiff's unpaired training step.

    Parameters
    ----------
    d_lr_scale : float
        Discriminator learning rate as a multiple of the run's.
    """

    name = "disdiff"
    title = "DisDiff"
    #: Trained on unpaired slices (input and target from different subjects), as in the paper.
    unpaired = True
    default_lr = 1e-4

    def build(self, model: Translator) -> RecipeParts:
        """Settle the model's unset mechanisms (:data:`TRAINING_MECHANISMS`), then group its parameters."""
        self._check(model)
        model.settle(TRAINING_MECHANISMS)
        net = model.net
        betas = (0.5, 0.9)
        return RecipeParts(
            {"generator": ParameterGroup(net.enc_c, net.enc_a, net.gen, model.diff),
             "discriminator": ParameterGroup(net.dis, net.dis_c, model.dis_t)},
            {"generator": OptimizerSpec(("generator",), betas=betas),
             "discriminator": OptimizerSpec(("discriminator",), lr_scale=self.d_lr_scale, betas=betas)},
        )

    def training_step(self, batch, model, modules, ctx) -> dict[str, torch.Tensor]:
        m = getattr(model, "module", model)
        with ctx.autocast():
            out = m.forward_train(batch["input"], batch["target"])
            d = m.discriminator_losses(out)
        ctx.optimise("discriminator", d["total"].float())
        with ctx.autocast():
            g = m.generator_losses(out)
            self.add_prior(batch, m, out, g, ctx.step)
        ctx.optimise("generator", g["total"].float())
        losses = {f"g_{k}": v.detach() for k, v in g.items() if k != "total"}
        losses.update({f"d_{k}": v.detach() for k, v in d.items() if k != "total"})
        losses["d_loss"] = d["total"].detach()
        losses["loss"] = g["total"].detach()
        return losses
