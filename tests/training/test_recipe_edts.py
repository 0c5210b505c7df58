"""Training recipe of EDTS-Trans (Eq. 16-17): losses, options, and a short run that learns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from napari_medtrans.core.metrics import ssim as reference_ssim
from napari_medtrans.training.recipe_edts import EdtsTransRecipe, edts_losses, ssim_torch
from napari_medtrans.training.recipes import get_recipe, list_recipes
from napari_medtrans.translators import create_translator


def test_registered_with_the_paper_defaults():
    assert "edts-trans" in list_recipes()
    r = get_recipe("edts-trans")
    assert isinstance(r, EdtsTransRecipe)
    assert r.default_lr == 2e-4 and r.default_min_lr == 1e-6
    assert r.config["alpha"] == 0.5 and r.config["ssim_loss"] is True
    assert get_recipe("edts-trans", ssim_loss=False).config["ssim_loss"] is False
    with pytest.raises(ValueError, match="alpha"):
        EdtsTransRecipe(alpha=-1)
    with pytest.raises(TypeError, match="EDTS-Trans"):
        r.build(create_translator("unet", width=4, depth=2))


def test_ssim_matches_the_metrics_module():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(2, 1, 32, 32, generator=g)).clamp(-1, 1)
    got = float(ssim_torch(x, y))
    want = np.mean([reference_ssim(x[i, 0].numpy(), y[i, 0].numpy(), data_range=2.0) for i in range(2)])
    assert got == pytest.approx(want, abs=1e-5)
    assert float(ssim_torch(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_eq16_eq17():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    outs = {k: (y + s * torch.randn(y.shape, generator=g)).requires_grad_()
            for k, s in (("regression", 0.1), ("diffusion", 0.2), ("fused", 0.05))}
    full = edts_losses(outs, y, alpha=0.5)
    l1 = sum(F.l1_loss(o, y) for o in outs.values())
    ss = sum(1 - ssim_torch(o, y) for o in outs.values())
    torch.testing.assert_close(full["l_fid"], l1.detach())
    torch.testing.assert_close(full["l_ssim"], ss.detach())
    assert float(full["loss"].detach()) == pytest.approx(float((l1 + 0.5 * ss).detach()), rel=1e-6)
    no_ssim = edts_losses(outs, y, alpha=0.5, ssim_weight_on=False)
    assert float(no_ssim["loss"].detach()) == pytest.approx(float(l1.detach()), rel=1e-6)
    assert float(no_ssim["l_ssim"]) == pytest.approx(float(ss.detach()), rel=1e-6)  # still reported
    perfect = edts_losses({k: y for k in outs}, y)
    assert float(perfect["loss"]) == pytest.approx(0.0, abs=1e-5)


class _Pairs(Dataset):
    """Smooth random 32x32 slices; the target is a fixed contrast change of the input."""

    def __init__(self, n=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 1, 4, 4, generator=g)
        self.x = F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
        self.y = (0.6 - 0.8 * self.x ** 2).clamp(-1, 1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input": self.x[i], "target": self.y[i], "mask": torch.ones(1, 32, 32)}


@pytest.fixture
def one_thread():
    """These 32x32 models gain nothing from more threads, and on a busy shared CPU threads only wait."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Ctx:
    """The part of the trainer's step context a recipe uses, with plain SGD."""

    def __init__(self, model):
        self.device = torch.device("cpu")
        self.step = 0
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()

    def optimise(self, name, loss):
        assert name == "model"
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


@pytest.mark.parametrize("ssim_loss", [True, False])
def test_training_step_reports_eq17(ssim_loss, one_thread):
    torch.manual_seed(0)
    model = create_translator("edts-trans", preset="cpu", width=4).train()
    recipe = EdtsTransRecipe(ssim_loss=ssim_loss)
    parts = recipe.build(model)
    assert parts.optimizers["model"].modules == ("model",) and not parts.modules
    data = _Pairs(n=2)
    b = {"input": data.x, "target": data.y}
    before = [p.detach().clone() for p in model.parameters()]
    out = recipe.training_step(b, model, {"model": model}, _Ctx(model))
    weight = 0.5 if ssim_loss else 0.0
    assert float(out["loss"]) == pytest.approx(float(out["l_fid"] + weight * out["l_ssim"]), rel=1e-5)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_a_few_steps_reduce_the_loss(tmp_path, one_thread):
    from napari_medtrans.training.trainer import Trainer

    torch.manual_seed(0)
    model = create_translator("edts-trans", preset="cpu", width=4, default_steps=2)
    trainer = Trainer(EdtsTransRecipe(), model, _Pairs(), None, out_dir=tmp_path, steps=40, batch_size=4, lr=3e-3,
                      min_lr=1e-4, log_every=1, checkpoint_every=0, val_every=0, device="cpu", progress=False,
                      grad_clip=1.0)
    res = trainer.fit()
    rows = [json.loads(line) for line in res.log_jsonl.read_text().splitlines()]
    loss = np.array([r["loss"] for r in rows])
    reg = np.array([r["l1_reg"] for r in rows])
    assert len(loss) == 40 and np.isfinite(loss).all()
    assert loss[-8:].mean() < 0.7 * loss[:8].mean()
    assert reg[-8:].mean() < 0.7 * reg[:8].mean()
    assert res.checkpoint.exists()
