import pytest
import torch

from napari_medtrans.training.recipes import get_recipe, list_recipes
from napari_medtrans.translators import create_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model():
    torch.manual_seed(0)
    return create_translator("disdiff", preset="cpu", width=8, disc_width=8, diff_width=8, attr_dim=4).train()


def test_registered_with_the_paper_betas_and_a_clean_split():
    assert "disdiff" in list_recipes()
    recipe = get_recipe("disdiff")
    model = _model()
    parts = recipe.build(model)
    assert parts.optimizers["generator"].betas == (0.5, 0.9) and recipe.default_lr == 1e-4
    g = {id(p) for p in parts.modules["generator"].parameters()}
    d = {id(p) for p in parts.modules["discriminator"].parameters()}
    assert not g & d and g | d == {id(p) for p in model.parameters()}
    with pytest.raises(TypeError, match="DisDiff"):
        recipe.build(create_translator("unet", width=8))


def test_steps_lower_the_diffusion_cycle_loss(step_ctx):
    model = _model()
    recipe = get_recipe("disdiff")
    parts = recipe.build(model)
    ctx = step_ctx(model, parts)
    g = torch.Generator().manual_seed(0)
    batch = {"input": torch.rand(2, 1, 16, 16, generator=g) * 2 - 1,
             "target": torch.rand(2, 1, 16, 16, generator=g) * 2 - 1}
    rows = []
    for _ in range(8):
        torch.manual_seed(1)  # the same diffusion levels and noise each step
        rows.append(recipe.training_step(batch, model, parts.modules, ctx))
    assert ctx.calls[:2] == ["discriminator", "generator"]
    assert all(torch.isfinite(v) for v in rows[0].values()) and float(rows[0]["d_gp"]) > 0
    assert float(rows[-1]["g_diff_cyc"]) < float(rows[0]["g_diff_cyc"])
    assert float(rows[-1]["g_rec"]) < float(rows[0]["g_rec"])


class _Unpaired(torch.utils.data.Dataset):
    def __init__(self, n=4, size=16):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, size, size, generator=g) * 2 - 1
        self.y = torch.rand(n, 1, size, size, generator=g) * 2 - 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input": self.x[i], "target": self.y[(i + 1) % len(self.y)], "mask": torch.ones_like(self.x[i])}


def test_the_checkpoint_records_the_trained_mechanisms_and_a_run_resumes(tmp_path):
    from napari_medtrans.training.trainer import Trainer
    from napari_medtrans.translators.checkpoint import load_translator

    def run(steps):
        model = _model()
        assert model.config["attr_injection"] is None  # settled by the recipe, inside the trainer
        return Trainer(get_recipe("disdiff"), model, _Unpaired(), None, out_dir=tmp_path, steps=steps, batch_size=2,
                       checkpoint_every=1, val_every=0, log_every=1, device="cpu", progress=False).fit()

    assert run(2).step == 2
    result = run(3)
    assert result.resumed_from == 2 and result.step == 3
    loaded = load_translator(result.checkpoint)
    assert loaded.config["attr_injection"] == "adain" and loaded.config["diff_condition"] == "cross"
    assert loaded.net.gen["T2"].injection == "adain" and loaded.diff_condition == "cross"
