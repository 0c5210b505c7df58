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

from .recipe_hifisyn import TwoOptimizerRecipe
from .recipes import register_recipe

__all__ = ["DisDiffRecipe", "TRAINING_MECHANISMS"]

#: What :meth:`DisDiffRecipe.build` sets where the model's config leaves a mechanism unset.
TRAINING_MECHANISMS = {"attr_injection": "adain", "diff_condition": "cross"}


@register_recipe("disdiff")
class DisDiffRecipe(TwoOptimizerRecipe):
    """DisDiff's unpaired training step (parameters as for :class:`~.recipe_hifisyn.TwoOptimizerRecipe`)."""

    name = "disdiff"
    title = "DisDiff"
    default_lr = 1e-4
    mechanisms = TRAINING_MECHANISMS
    betas = (0.5, 0.9)

    def parameter_groups(self, model):
        net = model.net
        return (net.enc_c, net.enc_a, net.gen, model.diff), (net.dis, net.dis_c, model.dis_t)

    def forward_train(self, model, batch) -> dict:
        return model.forward_train(batch["input"], batch["target"])
