"""Training recipe of CDM: Eq. 1 on hand-made tensors, the three stages, their order, and a trainer run of each."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from napari_medtrans.core.errors import ConfigMismatchError, MedtransError, MethodMismatchError, UnknownChoiceError
from napari_medtrans.training.recipe_cdm import CdmRecipe, masked_patch_loss
from napari_medtrans.training.recipes import get_recipe, list_recipes
from napari_medtrans.translators import create_translator, load_translator, save_checkpoint

TINY = dict(preset="cpu", width=4, depth=2, rep_dim=16, mrm_patch=4, mrm_width=8, mdn_width=16, mdn_blocks=2,
            src_width=4, src_levels=2)


def tiny(**kw):
    torch.manual_seed(0)
    return create_translator("cdm", **{**TINY, **kw})


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Slices(Dataset):
    """Smooth 32x32 T1/T2 slices; T1c and FLAIR are fixed contrast changes of them."""

    def __init__(self, n=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 2, 4, 4, generator=g)
        self.x = F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
        self.y = torch.stack([(0.5 * self.x[:, 0] + 0.4 * self.x[:, 1]).clamp(-1, 1),
                              (0.6 - 0.8 * self.x[:, 1] ** 2).clamp(-1, 1)], dim=1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input": self.x[i], "target": self.y[i], "mask": torch.ones(1, 32, 32)}


class _Ctx:
    """The part of the trainer's step context a recipe uses: Adam over the parameters that require grad."""

    def __init__(self, model, lr):
        self.device = torch.device("cpu")
        self.step = 0
        self.opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    def autocast(self):
        return contextlib.nullcontext()

    def optimise(self, name, loss):
        assert name == "model"
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def _checkpoint(model, path, stages):
    """A checkpoint as the trainer writes it after the given stages."""
    return save_checkpoint(model, path, training={"recipe": {"stage": stages[-1], "stages": list(stages)}})


def test_registered_with_the_paper_defaults():
    assert "cdm" in list_recipes()
    r = get_recipe("cdm", stage="mrm")
    assert isinstance(r, CdmRecipe) and r.stage == "mrm"
    assert r.default_lr == 1e-4 and r.config["weight_decay"] == 1e-5 and r.config["mask_ratio"] == 0.6
    assert get_recipe("cdm").stage == "cunet"
    with pytest.raises(UnknownChoiceError, match="mrm"):
        CdmRecipe(stage="joint")
    with pytest.raises(UnknownChoiceError, match="encoder"):
        CdmRecipe(condition="oracle")
    with pytest.raises(ValueError, match="mask_ratio"):
        CdmRecipe(mask_ratio=1.5)
    with pytest.raises(TypeError, match="CDM"):
        CdmRecipe().build(create_translator("unet", width=4, depth=2))


def test_eq1_on_hand_made_tensors():
    """Two 2x2 patches per 4x4 slice and modality: only the masked ones count, each by its mean squared error."""
    target = torch.zeros(1, 2, 4, 4)
    pred = torch.zeros(1, 2, 4, 4)
    pred[0, 0, :2, :2] = 2.0  # modality 0, patch (0, 0): squared error 4 everywhere
    pred[0, 0, 2:, 2:] = 100.0  # modality 0, patch (1, 1): not masked, must not count
    pred[0, 1, :2, 2:] = torch.tensor([[1.0, 1.0], [1.0, 3.0]])  # modality 1, patch (0, 1): (1+1+1+9)/4 = 3
    mask = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0] = True
    mask[0, 1, 0, 1] = True
    mask[0, 1, 1, 0] = True  # masked but restored exactly: error 0
    assert float(masked_patch_loss(pred, target, mask)) == pytest.approx((4 + 3 + 0) / 3)
    assert float(masked_patch_loss(target, target, mask)) == 0.0
    with pytest.raises(ValueError, match="masks no patch"):
        masked_patch_loss(pred, target, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="tile"):
        masked_patch_loss(pred, target, torch.ones(1, 2, 3, 3))
    with pytest.raises(ValueError, match="shape"):
        masked_patch_loss(pred, target[:, :1], mask)


def test_build_freezes_all_but_the_stage_and_records_it():
    m = tiny()
    r = CdmRecipe(stage="mdn", require_previous=False)
    parts = r.build(m)
    assert parts.optimizers["model"].modules == ("model",) and not parts.modules
    assert parts.optimizers["model"].weight_decay == 1e-5
    assert all(p.requires_grad for p in m.mdn.parameters())
    assert not any(p.requires_grad for p in (*m.mrm.parameters(), *m.cunet.parameters()))
    assert r.config["stages"] == ["mdn"]
    with pytest.raises(ValueError, match="M1"):
        CdmRecipe(stage="mrm").build(tiny(ablation="M1"))


def test_stage_order_and_init(tmp_path):
    trained = tiny()
    with torch.no_grad():
        trained.mrm.mask_token.fill_(0.5)
    after_mrm = _checkpoint(trained, tmp_path / "mrm.safetensors", ["mrm"])
    # MDN after MRM: weights loaded, stages chained
    fresh = tiny()
    r = CdmRecipe(stage="mdn", init=after_mrm)
    r.build(fresh)
    assert torch.equal(fresh.mrm.mask_token, torch.full((2,), 0.5))
    assert r.config["stages"] == ["mrm", "mdn"] and len(r.config["init_sha256"]) == 64
    # the C-UNet needs both earlier stages; without init the order cannot be checked
    with pytest.raises(MedtransError, match="mdn") as err:
        CdmRecipe(stage="cunet", init=after_mrm).build(tiny())
    assert str(after_mrm) in str(err.value)
    with pytest.raises(MedtransError, match="init="):
        CdmRecipe(stage="mdn").build(tiny())
    CdmRecipe(stage="cunet", init=_checkpoint(trained, tmp_path / "mdn.safetensors", ["mrm", "mdn"])).build(tiny())
    CdmRecipe(stage="cunet").build(tiny(ablation="M1"))  # M1 is one stage
    # a checkpoint of another size or another method is refused, naming the file
    with pytest.raises(ConfigMismatchError, match="does not fit"):
        CdmRecipe(stage="mdn", init=after_mrm).build(tiny(width=8))
    with pytest.raises(ConfigMismatchError, match="outputs"):
        CdmRecipe(stage="mdn", init=after_mrm).build(tiny(outputs=["T1c", "PD"]))
    unet = save_checkpoint(create_translator("unet", width=4, depth=2), tmp_path / "unet.safetensors")
    with pytest.raises(MethodMismatchError):
        CdmRecipe(stage="mdn", init=unet).build(tiny())


@pytest.mark.parametrize("stage,kw", [("mrm", {}), ("mdn", {}), ("cunet", {}), ("cunet", {"condition": "sampled"}),
                                      ("cunet", {"ablation": "M1"})])
def test_one_step_of_each_stage_lowers_its_loss(stage, kw):
    """Same random draws (mask, t, noise) before and after one optimiser step: the stage's loss goes down."""
    recipe_kw = {k: v for k, v in kw.items() if k == "condition"}
    model_kw = {k: v for k, v in kw.items() if k == "ablation"}
    m = tiny(**model_kw).train()
    recipe = CdmRecipe(stage=stage, require_previous=False, sampled_steps=3, **recipe_kw)
    recipe.build(m)
    data = _Slices(n=4)
    b = {"input": data.x, "target": data.y}
    ctx = _Ctx(m, lr=1e-3)
    frozen = {n: p.detach().clone() for n, p in m.named_parameters() if not p.requires_grad}
    torch.manual_seed(1)
    first = recipe.training_step(b, m, {"model": m}, ctx)
    torch.manual_seed(1)
    second = recipe.training_step(b, m, {"model": m}, ctx)
    assert float(second["loss"]) < float(first["loss"])
    assert all(torch.equal(p, frozen[n]) for n, p in m.named_parameters() if n in frozen)
    key = {"mrm": "l_mrm", "mdn": "l_mdn"}.get(stage)
    if key:
        assert float(first[key]) == float(first["loss"])
    else:
        assert set(first) == {"loss", "mse_T1c", "mse_FLAIR"}
        assert float(first["loss"]) == pytest.approx((float(first["mse_T1c"]) + float(first["mse_FLAIR"])) / 2)


def test_mrm_step_reports_eq1():
    m = tiny().train()
    recipe = CdmRecipe(stage="mrm")
    recipe.build(m)
    data = _Slices(n=2)
    torch.manual_seed(3)
    out = recipe.training_step({"input": data.x, "target": data.y}, m, {"model": m}, _Ctx(m, lr=0.0))
    torch.manual_seed(3)
    with torch.no_grad():
        passes = m(data.x, target=data.y, stage="mrm", mask_ratio=0.6)
    assert float(out["loss"]) == pytest.approx(float(masked_patch_loss(passes["pred"], data.y, passes["mask"])))


def test_three_stages_with_the_trainer(tmp_path):
    """MRM -> MDN -> C-UNet as three trainer runs chained by init; the last checkpoint translates."""
    from napari_medtrans.training.trainer import Trainer

    data = _Slices(n=4)
    previous = None
    for stage in ("mrm", "mdn", "cunet"):
        recipe = CdmRecipe(stage=stage, init=previous)
        result = Trainer(recipe, tiny(), data, data, out_dir=tmp_path / stage, steps=2, batch_size=2,
                         checkpoint_every=0, val_every=0, log_every=1, device="cpu", progress=False).fit()
        previous = result.checkpoint
    model = load_translator(previous)
    info = model.checkpoint_info
    assert info.training["recipe"]["stages"] == ["mrm", "mdn", "cunet"]
    assert info.training["recipe"]["stage"] == "cunet" and info.metrics["psnr"] is not None
    # every stage changed its own network only: the MRM of the final model is the first run's
    first = load_translator(tmp_path / "mrm" / "model.safetensors")
    for name, p in first.mrm.state_dict().items():
        assert torch.equal(p, model.mrm.state_dict()[name])
    assert not torch.equal(first.cunet.head[2].weight, model.cunet.head[2].weight)
    out = model.translate(data.x[:1], steps=3, generator=torch.Generator().manual_seed(0))
    assert out.image.shape == (1, 2, 32, 32)


def test_zero_condition_init_starts_as_m1_and_learns_to_use_the_condition():
    """condition_init="zero": the C-UNet stage starts with the distribution branches' last layers at zero, so the
    output does not depend on y_0 (the unconditioned U-Net of M1); training moves them off zero and the condition
    then changes the output. The default keeps the random init (the condition acts from the first step)."""
    x = _Slices(n=2).x
    y_a, y_b = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)), torch.randn(
        2, 16, generator=torch.Generator().manual_seed(1))
    m = tiny().train()
    CdmRecipe(stage="cunet", require_previous=False).build(m)
    with torch.no_grad():
        assert not torch.allclose(m.synthesize(x, y_a), m.synthesize(x, y_b))
    m = tiny().train()
    recipe = CdmRecipe(stage="cunet", require_previous=False, condition_init="zero")
    recipe.build(m)
    assert recipe.config["condition_init"] == "zero"
    with torch.no_grad():
        torch.testing.assert_close(m.synthesize(x, y_a), m.synthesize(x, y_b))
    data = _Slices(n=4)
    ctx = _Ctx(m, lr=1e-2)
    for _ in range(3):
        recipe.training_step({"input": data.x, "target": data.y}, m, {"model": m}, ctx)
    with torch.no_grad():
        moved = (m.synthesize(x, y_a) - m.synthesize(x, y_b)).abs().mean()
    assert float(moved) > 1e-4
    # only the C-UNet stage starts from zero, and a bad value is named
    with pytest.raises(UnknownChoiceError, match="condition init"):
        CdmRecipe(condition_init="ones")
    m = tiny()
    before = m.cunet.embed[0].distribution[2].weight.detach().clone()
    CdmRecipe(stage="mdn", require_previous=False, condition_init="zero").build(m)
    assert torch.equal(m.cunet.embed[0].distribution[2].weight, before)
