"""CycleGAN's recipe: paper settings, one generator and one discriminator step, the image pool, and
``medtrans train --method cyclegan`` on a small phantom (both directions from the checkpoint)."""


import pytest
import torch

from napari_medtrans.cli import main
from napari_medtrans.phantom import write_phantom_dataset
from napari_medtrans.training.recipe_cyclegan import ImagePool
from napari_medtrans.training.recipes import get_recipe, list_recipes
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import load_translator, read_checkpoint_metadata

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model():
    torch.manual_seed(0)
    return create_translator("cyclegan", preset="cpu", width=4, n_blocks=2).train()


def test_registered_with_the_paper_settings():
    assert "cyclegan" in list_recipes()
    recipe = get_recipe("cyclegan")
    assert recipe.unpaired and recipe.target_norm == "volume" and recipe.default_lr == 2e-4
    assert recipe.config["lambda_cyc"] == 10 and recipe.config["lambda_id"] == 0.5
    assert recipe.config["gan_loss"] == "lsgan" and recipe.config["pool_size"] == 50
    model = _model()
    parts = recipe.build(model)
    assert parts.optimizers["generator"].betas == (0.5, 0.999)
    assert parts.optimizers["generator"].modules == ("model",)
    d = parts.modules["discriminator"]
    assert set(d.d) == {"T1", "T2"} and d.d["T1"].receptive_field == 70
    with pytest.raises(TypeError, match="CycleGAN"):
        recipe.build(create_translator("unet", width=8))
    with pytest.raises(ValueError, match="pool_size"):
        get_recipe("cyclegan", pool_size=-1)


def test_steps_lower_the_cycle_loss_and_train_both_sides(step_ctx):
    model = _model()
    recipe = get_recipe("cyclegan", pool_size=4, d_layers=2)
    parts = recipe.build(model)
    ctx = step_ctx(model, parts)
    g = torch.Generator().manual_seed(0)
    batch = {"input": torch.rand(2, 1, 32, 32, generator=g) * 2 - 1,
             "target": torch.rand(2, 1, 32, 32, generator=g) * 2 - 1}
    d_before = [p.detach().clone() for p in parts.modules["discriminator"].parameters()]
    rows = [recipe.training_step(batch, model, parts.modules, ctx) for _ in range(8)]
    assert ctx.calls[:2] == ["generator", "discriminator"]
    assert all(torch.isfinite(v) for v in rows[0].values()) and float(rows[0]["g_idt"]) > 0
    assert float(rows[-1]["g_cyc"]) < float(rows[0]["g_cyc"])
    assert any(not torch.equal(a, b) for a, b in zip(d_before, parts.modules["discriminator"].parameters()))
    assert int(parts.modules["pool"].count_T1) == 4 and int(parts.modules["pool"].count_T2) == 4


def test_image_pool_fills_then_mixes_and_survives_a_state_round_trip():
    torch.manual_seed(0)
    pool = ImagePool(("T1", "T2"), 3)
    first = torch.arange(2.0).reshape(2, 1, 1, 1).expand(2, 1, 4, 4)
    assert torch.equal(pool.query("T1", first), first)
    pool.query("T1", first + 10)
    assert int(pool.count_T1) == 3 and pool.images_T1.shape == (3, 1, 4, 4)
    seen = torch.cat([pool.query("T1", torch.full((8, 1, 4, 4), 100.0)) for _ in range(4)])
    assert (seen[:, 0, 0, 0] < 100).any() and (seen[:, 0, 0, 0] == 100).any()  # old images come back, half the time
    again = ImagePool(("T1", "T2"), 3)
    again.load_state_dict(pool.state_dict())
    torch.testing.assert_close(again.images_T1, pool.images_T1)
    assert int(again.count_T1) == 3 and int(again.count_T2) == 0
    assert torch.equal(ImagePool(("T1", "T2"), 0).query("T2", first), first)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, 4, seed=0, shape=(32, 32, 12), contrasts=("T1", "T2"), split=(0.5, 0.25, 0.25))
    return root


def test_medtrans_train_cyclegan_writes_a_two_way_checkpoint_and_resumes(phantom, tmp_path, capsys):
    out = tmp_path / "cg"
    args = ["train", "--method", "cyclegan", "--data", str(phantom), "--out", str(out), "--batch-size", "2",
            "--size", "32", "32", "--log-every", "1", "--val-every", "2", "--val-max-slices", "2",
            "--checkpoint-every", "1", "--threads", "1", "--width", "4", "--config", "n_blocks=1",
            "--recipe-option", "pool_size=3"]
    assert main([*args, "--steps", "2"]) == 0
    text = capsys.readouterr().out
    assert "training cyclegan T1 -> T2" in text and "unpaired training slices" in text
    info = read_checkpoint_metadata(out / "model.safetensors")
    assert info.normalisation["targets"] == "volume" and info.training["recipe"]["pool_size"] == 3
    reverse = load_translator(out / "model.safetensors", direction="T2->T1")
    assert reverse.spec.outputs == ("T1",) and "T1" in reverse.normalisation["outputs"]
    assert main([*args, "--steps", "3"]) == 0
    assert "resumed from step 2" in capsys.readouterr().out


def _brain_batch(seed: int) -> dict:
    """An unpaired batch with brain masks: a square "brain" of random tissue, T2 the reversed T1 of other slices."""
    g = torch.Generator().manual_seed(seed)
    disc = torch.zeros(2, 1, 32, 32)
    disc[..., 6:26, 6:26] = 1
    tissue = torch.rand(2, 1, 32, 32, generator=g)
    return {"input": torch.where(disc > 0, tissue, torch.full_like(tissue, -1.0)),
            "target": torch.where(disc > 0, -tissue.flip(0), torch.full_like(tissue, -1.0)),
            "mask": disc, "target_mask": disc}


def test_with_the_histogram_base_each_step_fits_it_and_trains_the_residual(step_ctx):
    """``--config base=histogram`` (issue 19): the recipe adds each batch's brain intensities to the base's
    quantiles before the generators' step, and the zero-initialised residual layer learns."""
    torch.manual_seed(0)
    model = create_translator("cyclegan", preset="cpu", width=4, n_blocks=2, base="histogram").train()
    recipe = get_recipe("cyclegan", pool_size=2, d_layers=2, lambda_id=0.0, prior_steps=0)
    parts = recipe.build(model)
    ctx = step_ctx(model, parts)
    batch = _brain_batch(0)
    last = [m for m in model.gen["T1_to_T2"].net if isinstance(m, torch.nn.Conv2d)][-1]
    assert float(last.weight.detach().abs().sum()) == 0 and not model.base.fitted
    rows = [recipe.training_step(batch, model, parts.modules, ctx) for _ in range(3)]
    assert int(model.base.count) == 3 and all(torch.isfinite(r["loss"]) for r in rows)
    assert float(last.weight.detach().abs().sum()) > 0


def test_the_anchor_holds_the_translations_at_the_histogram_base(step_ctx):
    """``anchor_weight`` adds the L1 between each translation and its base image; at the start (zero residual) the
    translation is the base, so the term is ~0 and grows only as the residual moves; it needs a base."""
    torch.manual_seed(0)
    model = create_translator("cyclegan", preset="cpu", width=4, n_blocks=2, base="histogram").train()
    recipe = get_recipe("cyclegan", pool_size=2, d_layers=2, lambda_id=0.0, prior_steps=0, anchor_weight=5.0)
    assert recipe.config["anchor_weight"] == 5.0
    parts = recipe.build(model)
    ctx = step_ctx(model, parts)
    batch = _brain_batch(1)
    first = recipe.training_step(batch, model, parts.modules, ctx)
    assert float(first["g_anchor"]) < 0.01
    rows = [recipe.training_step(batch, model, parts.modules, ctx) for _ in range(4)]
    assert float(rows[-1]["g_anchor"]) > float(first["g_anchor"])
    plain = create_translator("cyclegan", preset="cpu", width=4, n_blocks=2).train()
    parts = recipe.build(plain)
    with pytest.raises(ValueError, match="base=histogram"):
        recipe.training_step(batch, plain, parts.modules, step_ctx(plain, parts))
    with pytest.raises(ValueError, match="anchor_weight"):
        get_recipe("cyclegan", anchor_weight=-1)
