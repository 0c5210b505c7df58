import pytest
import torch

from napari_medtrans.training.recipes import get_recipe, list_recipes
from napari_medtrans.translators import create_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(labels=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = {"input": torch.rand(2, 1, 16, 16, generator=g) * 2 - 1, "target": torch.rand(2, 1, 16, 16, generator=g) * 2 - 1}
    if labels:
        b["labels"] = torch.randint(0, 4, (2, 1, 16, 16), generator=g)
        b["target_labels"] = torch.randint(0, 4, (2, 1, 16, 16), generator=g)
    return b


def _model():
    torch.manual_seed(0)
    return create_translator("hifi-syn", preset="cpu", width=8, disc_width=8, attr_dim=4).train()


def test_registered_and_optimisers_split_generator_and_discriminators():
    assert "hifi-syn" in list_recipes()
    recipe = get_recipe("hifi-syn")
    model = _model()
    parts = recipe.build(model)
    g = {id(p) for p in parts.modules["generator"].parameters()}
    d = {id(p) for p in parts.modules["discriminator"].parameters()}
    assert not g & d and g | d == {id(p) for p in model.parameters()}
    with pytest.raises(TypeError, match="HiFi-Syn"):
        recipe.build(create_translator("unet", width=8))


def test_steps_train_both_sides_update_the_bank_and_lower_the_reconstruction(step_ctx):
    model = _model()
    recipe = get_recipe("hifi-syn")
    parts = recipe.build(model)
    ctx = step_ctx(model, parts)
    batch = _batch()
    keys = model.bank.keys.clone()
    d_before = [p.detach().clone() for p in parts.modules["discriminator"].parameters()]
    rows = [recipe.training_step(batch, model, parts.modules, ctx) for _ in range(6)]
    assert ctx.calls[:2] == ["discriminator", "generator"]
    assert all(torch.isfinite(v) for v in rows[0].values()) and float(rows[0]["g_sgd"]) > 0
    assert float(rows[-1]["g_rec"]) < float(rows[0]["g_rec"])
    assert not torch.equal(keys, model.bank.keys)
    assert any(not torch.equal(a, p) for a, p in zip(d_before, parts.modules["discriminator"].parameters()))


def test_without_labels_sgd_is_zero(step_ctx):
    model = _model()
    recipe = get_recipe("hifi-syn")
    parts = recipe.build(model)
    row = recipe.training_step(_batch(labels=False), model, parts.modules, step_ctx(model, parts))
    assert float(row["g_sgd"]) == 0.0 and float(row["g_pgd"]) > 0
