"""MRNet training recipe: Eq. 6-11 on hand-made tensors, the PatchGAN step and a short run."""

from __future__ import annotations

import contextlib
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from napari_medtrans.training.recipe_mrnet import MRNetRecipe, discriminator_loss, mrnet_losses
from napari_medtrans.training.recipes import get_recipe, list_recipes
from napari_medtrans.training.step_context import frozen_parameters
from napari_medtrans.translators import create_translator


def tiny(**kw):
    return create_translator("mrnet", **{"width": 4, "depth": 3, "mask_width": 4, **kw})


# -- Eq. 6-11 on hand-made tensors ---------------------------------------------------------------------
def _hand_made():
    d_fake = torch.tensor([[[[0.5, 1.0], [2.0, 0.0]]]])  # (D - 1)^2: 0.25, 0, 1, 1 -> mean 0.5625
    fake = torch.tensor([[[[0.2, -0.4], [0.6, 0.0]]]])
    target = torch.tensor([[[[0.0, 0.0], [1.0, 0.0]]]])  # |y - G|: 0.2, 0.4, 0.4, 0 -> mean 0.25
    y1 = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    y2 = fake
    m1 = torch.tensor([[[[1.0, 0.5], [0.0, 0.25]]]])  # 1 - M1: 0, 0.5, 1, 0.75 -> mean 0.5625
    m2 = torch.tensor([[[[0.5, 0.5], [0.5, 0.5]]]])  # 1 - M2: 0.5 everywhere
    return d_fake, fake, target, [fake * 0 + 9.0, y1, y2], [m1, m2]


def test_each_loss_term_on_hand_made_tensors():
    d_fake, fake, target, ys, masks = _hand_made()
    out = mrnet_losses(d_fake, fake, target, ys, masks)
    assert float(out["gan"]) == pytest.approx(0.5625)  # Eq. 6
    assert float(out["pixel"]) == pytest.approx(0.25)  # Eq. 7
    # Eq. 9: |y1 (1 - M1)| = 0, 0.5, 0.5, 0 -> 0.25; |y2 (1 - M2)| = 0.1, 0.2, 0.3, 0 -> 0.15
    assert float(out["feature"]) == pytest.approx(0.25 + 0.15)
    assert float(out["mask"]) == pytest.approx(0.5625 + 0.5)  # Eq. 10
    total = 0.5625 + 100 * 0.25 + 0.1 * 0.4 + 0.05 * 1.0625  # Eq. 11 with the paper's weights
    assert float(out["loss"]) == pytest.approx(total)
    # y_hat_0 (the 9.0s) takes no part; passing y_hat_1 ... y_hat_n alone gives the same
    same = mrnet_losses(d_fake, fake, target, ys[1:], masks)
    assert float(same["loss"]) == pytest.approx(total)
    weighted = mrnet_losses(d_fake, fake, target, ys, masks, lambda_pixel=1, lambda_feature=2, lambda_mask=3)
    assert float(weighted["loss"]) == pytest.approx(0.5625 + 0.25 + 2 * 0.4 + 3 * 1.0625)
    with pytest.raises(ValueError, match="one y_hat per mask"):
        mrnet_losses(d_fake, fake, target, ys[:1], masks)


def test_perfect_output_and_open_masks_cost_nothing_but_the_feature_term():
    y = torch.rand(1, 1, 4, 4)
    ones = torch.ones_like(y)
    out = mrnet_losses(torch.ones(1, 1, 2, 2), y, y, [y, y], [ones, ones])
    assert float(out["loss"]) == pytest.approx(0.0, abs=1e-7)


def test_discriminator_loss_is_least_squares():
    real = torch.tensor([1.0, 0.0])  # (1-1)^2, (0-1)^2 -> 0.5
    fake = torch.tensor([0.0, 2.0])  # 0, 4 -> 2
    assert float(discriminator_loss(real, fake)) == pytest.approx(0.5 * (0.5 + 2.0))


# -- the recipe ----------------------------------------------------------------------------------------
def test_registered_with_the_paper_defaults():
    assert "mrnet" in list_recipes()
    r = get_recipe("mrnet")
    assert isinstance(r, MRNetRecipe) and r.default_lr == pytest.approx(1e-4)
    assert (r.lambda_pixel, r.lambda_feature, r.lambda_mask) == (100.0, 0.1, 0.05)
    parts = r.build(tiny())
    disc = parts.modules["discriminator"]
    assert disc.receptive_field == 34 and disc.net[0].in_channels == 2
    assert parts.optimizers["generator"].betas == (0.5, 0.999)
    assert parts.optimizers["discriminator"].modules == ("discriminator",)
    with pytest.raises(TypeError, match="MRNet"):
        r.build(create_translator("unet", width=8, depth=2))
    with pytest.raises(ValueError, match="lambda_mask"):
        MRNetRecipe(lambda_mask=-1)


class _Ctx:
    """The part of the trainer's step context a recipe uses, with Adam per optimiser."""

    def __init__(self, model, disc, lr=1e-3):
        self.device = torch.device("cpu")
        self.step = 0
        self.raw = {"discriminator": disc}
        self.opts = {
            "generator": torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr,
                                          betas=(0.5, 0.999)),
            "discriminator": torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999)),
        }
        self.order = []

    def autocast(self):
        return contextlib.nullcontext()

    def optimise(self, name, loss):
        self.order.append(name)
        self.opts[name].zero_grad()
        loss.backward()
        self.opts[name].step()

    def frozen(self, name):
        return frozen_parameters(self.raw[name])


def _pairs(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 4, 4, generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
    return x, (0.6 - 0.8 * x**2).clamp(-1, 1)


def _g_loss(model, disc, x, y):
    with torch.no_grad():
        out = model(x, details=True)
        pred = disc(torch.cat([x, out["image"]], 1))
        return float(mrnet_losses(pred, out["image"], y, out["ys"], out["masks"])["loss"])


def test_one_step_lowers_the_generator_loss():
    torch.manual_seed(0)
    model = tiny().train()
    recipe = MRNetRecipe()
    disc = recipe.build(model).modules["discriminator"]
    x, y = _pairs()
    before = copy.deepcopy(model)
    d_before = [p.detach().clone() for p in disc.parameters()]
    ctx = _Ctx(model, disc)
    out = recipe.training_step({"input": x, "target": y}, model, {"model": model, "discriminator": disc}, ctx)
    assert ctx.order == ["discriminator", "generator"]
    assert set(out) >= {"loss", "gan", "pixel", "feature", "mask", "d"}
    assert float(out["loss"]) == pytest.approx(float(out["gan"] + 100 * out["pixel"] + 0.1 * out["feature"]
                                                     + 0.05 * out["mask"]), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(d_before, disc.parameters()))
    # against the discriminator the generator step saw, the updated generator does better
    assert _g_loss(model, disc, x, y) < _g_loss(before, disc, x, y)


def test_frozen_sam_encoder_is_not_trained():
    torch.manual_seed(0)
    model = tiny(freeze_encoder=True, sam_pretrained="test").train()
    recipe = MRNetRecipe()
    disc = recipe.build(model).modules["discriminator"]
    enc = [p.detach().clone() for p in model.net.encoder.parameters()]
    x, y = _pairs(n=2)
    recipe.training_step({"input": x, "target": y}, model, {"model": model, "discriminator": disc},
                         _Ctx(model, disc))
    assert all(torch.equal(a, b) for a, b in zip(enc, model.net.encoder.parameters()))


class _Pairs(Dataset):
    def __init__(self, n=8):
        self.x, self.y = _pairs(n=n)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input": self.x[i], "target": self.y[i], "mask": torch.ones(1, 32, 32)}


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_a_short_run_with_the_trainer_reduces_the_pixel_loss(tmp_path, one_thread):
    from napari_medtrans.training.trainer import Trainer

    torch.manual_seed(0)
    model = tiny()
    trainer = Trainer(MRNetRecipe(), model, _Pairs(), None, out_dir=tmp_path, steps=30, batch_size=4, lr=2e-3,
                      log_every=1, checkpoint_every=0, val_every=0, device="cpu", progress=False)
    res = trainer.fit()
    rows = [json.loads(line) for line in res.log_jsonl.read_text().splitlines()]
    pixel = np.array([r["pixel"] for r in rows if "pixel" in r])
    assert len(pixel) == 30 and np.isfinite(pixel).all()
    assert pixel[-5:].mean() < 0.7 * pixel[:5].mean()
    assert res.checkpoint.exists()
