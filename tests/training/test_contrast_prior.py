"""The contrast prior of the unpaired recipes (issue 19): which way T1 -> T2 runs, the rank-mapped pseudo-target,
and that the warm start turns a translation's tissue order where the papers' losses alone leave it."""

import contextlib

import pytest
import torch

from napari_medtrans.training.contrast_prior import contrast_sign, prior_weight, rank_prior, resolve_sign
from napari_medtrans.training.recipes import get_recipe
from napari_medtrans.training.step_context import frozen_parameters
from napari_medtrans.translators import create_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Label -> value of the toy slices: 1 CSF, 2 GM, 3 WM (T1: WM bright; T2: CSF bright).
T1_VALUES = {0: -1.0, 1: -0.7, 2: -0.3, 3: 0.1}
T2_VALUES = {0: -1.0, 1: 0.7, 2: -0.1, 3: -0.5}


def _toy(n, seed, values):
    """``n`` 32 x 32 brain-like slices: CSF rim and ventricle, GM ring, WM core, each slice shaped differently."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    imgs, labs = [], []
    for _ in range(n):
        cy, cx = (16 + torch.randn(2, generator=g) * 2).tolist()
        r = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        r = r * (1 + 0.15 * torch.sin(3 * torch.atan2(yy - cy, xx - cx) + float(torch.rand(1, generator=g)) * 6))
        lab = torch.zeros(32, 32, dtype=torch.long)
        lab[r < 14] = 1
        lab[r < 11] = 2
        lab[r < 7] = 3
        lab[r < 3] = 1
        img = torch.full((32, 32), -1.0)
        for k, v in values.items():
            img[lab == k] = v
        imgs.append(img + 0.03 * torch.randn(32, 32, generator=g) * (lab > 0))
        labs.append(lab)
    labs = torch.stack(labs)[:, None]
    return torch.stack(imgs)[:, None], (labs > 0).float(), labs


def test_the_tissue_order_table_gives_the_sign_of_each_pair():
    assert contrast_sign("T1", "T2") == -1 and contrast_sign("T2", "T1") == -1
    assert contrast_sign("T1", "PD") == -1 and contrast_sign("T2", "PD") == 1 and contrast_sign("T1", "T1c") == 1
    assert contrast_sign("T1", "FLAIR") is None and contrast_sign("T1", "CT") is None
    assert resolve_sign("T1", "FLAIR", -1, 400) == -1
    assert resolve_sign("T1", "FLAIR", None, 0) is None
    with pytest.raises(ValueError, match="T1 and FLAIR.*prior_sign"):
        resolve_sign("T1", "FLAIR", None, 400)
    with pytest.raises(ValueError, match="prior_sign"):
        resolve_sign("T1", "T2", 2, 400)


def test_the_weight_falls_to_zero_over_the_warm_start():
    assert prior_weight(0, 400, 10.0) == 10.0
    assert prior_weight(200, 400, 10.0) == pytest.approx(5.0)
    assert prior_weight(400, 400, 10.0) == 0.0 and prior_weight(5000, 400, 10.0) == 0.0
    assert prior_weight(0, 0, 10.0) == 0.0


def test_rank_prior_gives_the_input_the_target_batch_values_in_reversed_order():
    x, mx, lx = _toy(3, 1, T1_VALUES)
    y, my, _ = _toy(3, 2, T2_VALUES)
    p = rank_prior(x, mx, y, my, -1)
    csf, gm, wm = (float(p[lx == k].mean()) for k in (1, 2, 3))
    assert csf > gm > wm  # the T2 order, from T1 inputs and unpaired T2 slices
    assert float(p[mx > 0].min()) >= float(y[my > 0].min()) - 1e-6
    assert float(p[mx > 0].max()) <= float(y[my > 0].max()) + 1e-6
    assert torch.all(p[mx == 0] == -1.0)  # the target's background
    same = rank_prior(x, mx, y, my, 1)
    assert float(same[lx == 3].mean()) > float(same[lx == 1].mean())  # sign +1 keeps T1's order
    # the pseudo-target's values are the target batch's distribution: its median matches
    assert float(p[mx > 0].median()) == pytest.approx(float(y[my > 0].median()), abs=0.15)


class _Ctx:
    def __init__(self, model, parts, lr=2e-3):
        self.device = torch.device("cpu")
        self.step = 0
        self.mods = dict(parts.modules, model=model)
        self.opts = {name: torch.optim.Adam([p for m in spec.modules for p in self.mods[m].parameters()], lr=lr,
                                            betas=spec.betas)
                     for name, spec in parts.optimizers.items()}

    def autocast(self):
        return contextlib.nullcontext()

    def optimise(self, name, loss):
        self.opts[name].zero_grad()
        loss.backward()
        self.opts[name].step()

    def frozen(self, name):
        return frozen_parameters(self.mods[name])


def _train(method, prior_steps, steps):
    torch.manual_seed(0)
    model = create_translator(method, preset="cpu", width=4).train()
    recipe = get_recipe(method, prior_steps=prior_steps, prior_weight=100.0)
    parts = recipe.build(model)
    ctx = _Ctx(model, parts)
    x, mx, _ = _toy(4, 1, T1_VALUES)
    y, my, _ = _toy(4, 2, T2_VALUES)
    batch = {"input": x, "target": y, "mask": mx, "target_mask": my}
    rows = []
    for s in range(steps):
        ctx.step = s
        rows.append(recipe.training_step(batch, model, parts.modules, ctx))
    return model.eval(), rows


@pytest.mark.parametrize("method", ["cyclegan", "disdiff", "hifi-syn"])
def test_the_recipes_add_the_prior_only_during_the_warm_start(method):
    _, rows = _train(method, prior_steps=2, steps=3)
    key = "g_prior"
    assert float(rows[0][key]) > 0.1 and float(rows[1][key]) > 0.1
    assert float(rows[2][key]) == 0.0  # step 2 = prior_steps: the papers' losses alone
    _, off = _train(method, prior_steps=0, steps=1)
    assert float(off[0][key]) == 0.0


@pytest.mark.parametrize("method", ["cyclegan", "disdiff"])
def test_the_warm_start_turns_the_tissue_order_the_papers_losses_keep(method):
    """Same seed, same steps: with the prior the T1 -> T2 translation anti-correlates with its input and its CSF
    is brighter than its WM (as in T2); without it, the translation still follows T1's order."""
    xt, _, lt = _toy(2, 3, T1_VALUES)
    inside = lt > 0

    def measure(model):
        with torch.no_grad():
            out = model.translate(xt).image
        r = float(torch.corrcoef(torch.stack([out[inside], xt[inside]]))[0, 1])
        return r, float(out[lt == 1].mean() - out[lt == 3].mean())

    r_on, csf_wm_on = measure(_train(method, prior_steps=100, steps=12)[0])
    r_off, csf_wm_off = measure(_train(method, prior_steps=0, steps=12)[0])
    assert r_on < -0.2 and csf_wm_on > 0.1
    assert r_off > -0.2 and csf_wm_on > csf_wm_off + 0.1
