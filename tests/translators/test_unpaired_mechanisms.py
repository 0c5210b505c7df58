"""Issue 19: each mechanism of DisDiff and HiFi-Syn must change what the network produces.

The models are built as their training recipes build them (``recipe.build(model)`` gives every mechanism key the
model leaves unset the value new training uses), at random initialisation with small widths, and probed on a
T1-like / T2-like pair of slices of one toy brain (white matter, a grey-matter ring, ventricles, background; the
contrast of WM, GM and CSF inverted between the two). A probe counts as "no effect" below 0.1 mean absolute
change in [-1, 1] units; the issue measured 0.066 for the inert attribute (x -10) and 0.004 for the inert memory
read of the shipped models.
"""

import pytest
import torch

from napari_medtrans.training.recipes import get_recipe
from napari_medtrans.translators import create_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Mean absolute change (in [-1, 1] units) above which a mechanism counts as having an effect.
EFFECT = 0.1


def toy_brain(size: int = 32, b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t1, t2)``: ``[b, 1, size, size]`` slices of one toy brain in [-1, 1], T1-like and T2-like contrast."""
    g = torch.Generator().manual_seed(seed)
    ax = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    out1, out2 = [], []
    for k in range(b):
        r = torch.sqrt((xx / (0.8 + 0.05 * k)) ** 2 + (yy / 0.9) ** 2)
        brain, wm = r < 0.9, r < 0.65
        csf = ((xx.abs() - 0.15) ** 2 / 0.01 + yy**2 / 0.08) < 1
        t1, t2 = torch.full_like(r, -1.0), torch.full_like(r, -1.0)
        t1[brain], t2[brain] = 0.1, 0.3  # grey matter
        t1[wm], t2[wm] = 0.6, -0.2  # white matter
        t1[csf], t2[csf] = -0.6, 0.9  # ventricles
        noise = 0.03 * torch.randn(size, size, generator=g)
        out1.append((t1 + noise * brain).clamp(-1, 1))
        out2.append((t2 + noise * brain).clamp(-1, 1))
    return torch.stack(out1)[:, None], torch.stack(out2)[:, None]


def as_trained(method: str, **config):
    """A small model with random weights and the mechanisms its recipe trains."""
    torch.manual_seed(0)
    base = dict(preset="cpu", width=8, disc_width=8, attr_dim=8)
    if method == "disdiff":
        base["diff_width"] = 8
    model = create_translator(method, **{**base, **config})
    get_recipe(method).build(model)
    return model.eval()


def change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().mean())


# -- the attribute (both methods) -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["disdiff", "hifi-syn"])
def test_swapping_the_attribute_between_modalities_changes_the_translation(method):
    model = as_trained(method)
    net = model.net
    t1, t2 = toy_brain()
    with torch.no_grad():
        content = net.enc_c["T1"](t1)
        _, za_t2 = net.encode(t2, "T2")
        _, za_t1 = net.encode(t1, "T1")
        own = net.decode(content, za_t2, "T2")
        swapped = net.decode(content, za_t1, "T2")
        scaled = net.decode(content, -10 * za_t2, "T2")  # the probe
    assert change(own, swapped) > EFFECT
    assert change(own, scaled) > EFFECT


def test_hifisyn_reads_of_the_two_modalities_give_different_translations():
    model = as_trained("hifi-syn")
    t1, _ = toy_brain()
    with torch.no_grad():
        content = model.net.enc_c["T1"](t1)
        as_t2 = model.net.decode(content, model.bank.read(content, "T2"), "T2")
        as_t1 = model.net.decode(content, model.bank.read(content, "T1"), "T2")
    assert change(as_t2, as_t1) > EFFECT


# -- HiFi-Syn's memory read -------------------------------------------------------------------------------------
def test_zeroing_the_memory_read_changes_the_translation(monkeypatch):
    model = as_trained("hifi-syn")
    t1, _ = toy_brain()
    with torch.no_grad():
        read = model.bank.read(model.net.enc_c["T1"](t1), "T2")
        normal = model.translate(t1).image
        monkeypatch.setattr(model.bank, "read", lambda content, *a, **k: torch.zeros_like(read))
        zeroed = model.translate(t1).image
    assert change(normal, zeroed) > EFFECT


def test_the_generator_takes_the_memory_read_and_the_encoder_attribute_on_one_scale():
    """Self-reconstruction (Eq. 14) feeds the encoder's raw attribute map, translation the bank's read (a convex
    combination of unit values, Eq. 3, 5) into the same generator inputs. Training let the raw maps grow (mean abs
    13.6 against 0.26 for the values in the shipped model); the generator's answer must not depend on that scale."""
    model = as_trained("hifi-syn")
    t1, _ = toy_brain()
    with torch.no_grad():
        content, attr = model.net.encode(t1, "T1")
        read = model.bank.read(content, "T1")
        for a in (attr, read):
            base = model.net.decode(content, a, "T1")
            for scale in (0.02, 50.0):
                assert change(model.net.decode(content, scale * a, "T1"), base) < 1e-3


def test_the_memory_read_is_not_spatially_flat():
    model = as_trained("hifi-syn")
    t1, _ = toy_brain()
    with torch.no_grad():
        content = model.net.enc_c["T1"](t1)
        # keys placed on content pixels of different tissue, as the Eq. 4 update places them while training
        q = content.permute(0, 2, 3, 1).reshape(-1, content.shape[1])
        glob = (model.bank.item_class < 0).nonzero().flatten()
        picks = torch.linspace(0, q.shape[0] - 1, len(glob)).long()
        model.bank.keys[glob] = torch.nn.functional.normalize(q[picks], dim=1)
        read = model.bank.read(content, "T2")
        weights = model.bank.affinity(q)
    # Eq. 1 with a temperature: each pixel leans on the items its content is like, not on all of them equally
    assert float(weights.max(dim=1).values.mean()) > 0.5
    assert float(read.std(dim=(2, 3)).mean()) > 0.1


# -- DisDiff's diffusion conditioning ---------------------------------------------------------------------------
def _record_denoise(model, monkeypatch):
    calls = []
    real = model.denoise

    def spy(x_s, s, content, draft, modality, *args, **kwargs):
        calls.append({"modality": modality, "content": content, "draft": draft})
        return real(x_s, s, content, draft, modality, *args, **kwargs)

    monkeypatch.setattr(model, "denoise", spy)
    return calls


def test_disdiff_diffusion_is_conditioned_on_the_cross_translation_in_training(monkeypatch):
    model = as_trained("disdiff").train()
    calls = _record_denoise(model, monkeypatch)
    t1, t2 = toy_brain()
    out = model.forward_train(t1, t2, generator=torch.Generator().manual_seed(0))
    assert [c["modality"] for c in calls] == ["T1", "T2"]
    # the module that rebuilds m_i sees m_{i->j} (and its content), the one that rebuilds m_j sees m_{j->i}:
    # an image of the other modality with the anatomy to rebuild, as the source image is at inference
    assert calls[0]["draft"] is out["fake_j"] and calls[1]["draft"] is out["fake_i"]
    assert calls[0]["content"] is out["zc_fj"] and calls[1]["content"] is out["zc_fi"]
    # not the cycle reconstruction, which the backbone itself trains towards the Eq. 12 target
    assert change(calls[0]["draft"], out["cyc_i"]) > 0


def test_disdiff_diffusion_gets_the_same_kind_of_input_at_inference(monkeypatch):
    model = as_trained("disdiff")
    calls = _record_denoise(model, monkeypatch)
    t1, _ = toy_brain()
    with torch.no_grad():
        model.translate(t1, steps=2, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2 and all(c["modality"] == "T2" for c in calls)
    # at inference the image of the other modality that carries the anatomy is the source image itself
    assert all(torch.equal(c["draft"], t1) for c in calls)


# -- old checkpoints, explicit choices and two-way checkpoints of the new mechanisms ---------------------------
def test_unset_keys_build_the_old_mechanisms_and_the_recipe_settles_only_those():
    torch.manual_seed(0)
    old = create_translator("disdiff", preset="cpu", width=8, disc_width=8, diff_width=8, attr_dim=4)
    assert old.config["attr_injection"] is None and old.config["diff_condition"] is None
    assert old.net.gen["T2"].injection == "concat" and old.diff_condition == "cycle"
    assert not hasattr(old.diff["T2"], "attr")
    chosen = create_translator("disdiff", preset="cpu", width=8, disc_width=8, diff_width=8, attr_dim=4,
                               attr_injection="concat")
    get_recipe("disdiff").build(chosen)  # an explicit choice (an ablation) is kept
    assert chosen.config["attr_injection"] == "concat" and chosen.config["diff_condition"] == "cross"
    assert chosen.net.gen["T2"].injection == "concat" and hasattr(chosen.diff["T2"], "attr")
    hifi = create_translator("hifi-syn", preset="cpu", width=8, disc_width=8, attr_dim=4)
    assert hifi.bank.temperature == 1.0
    assert hifi.settle({"attr_injection": "adain", "read_tau": 0.07}) == {"attr_injection": "adain", "read_tau": 0.07}
    assert hifi.bank.temperature == 0.07 and hifi.net.gen["T1"].injection == "adain"
    assert hifi.settle({"read_tau": 0.5}) == {} and hifi.bank.temperature == 0.07


@pytest.mark.parametrize("method", ["disdiff", "hifi-syn"])
def test_new_mechanisms_round_trip_a_checkpoint_and_serve_both_directions(method, tmp_path):
    from napari_medtrans.translators.checkpoint import load_translator, save_checkpoint

    model = as_trained(method)
    norm = {"scheme": "percentile", "inputs": {"T1": {"lo": 0.0, "hi": 600.0}},
            "outputs": {"T2": {"lo": 0.0, "hi": 500.0}}, "targets": "volume"}
    path = save_checkpoint(model, tmp_path / f"{method}.safetensors", normalisation=norm)
    t1, t2 = toy_brain()
    for direction, x in (("T1->T2", t1), ("T2->T1", t2)):
        again = load_translator(path, direction=direction)
        assert again.config["attr_injection"] == "adain"
        reference = model.for_direction(*direction.split("->"))
        with torch.no_grad():
            a = again.translate(x, generator=torch.Generator().manual_seed(3)).image
            b = reference.translate(x, generator=torch.Generator().manual_seed(3)).image
        torch.testing.assert_close(a, b)


def test_disdiff_reference_image_steers_the_diffusion_through_the_attribute():
    model = as_trained("disdiff")
    t1, _ = toy_brain()
    with torch.no_grad():
        plain = model.translate(t1, steps=2, generator=torch.Generator().manual_seed(0)).image
        steered = model.translate(t1, steps=2, generator=torch.Generator().manual_seed(0), reference=t1).image
    assert change(plain, steered) > 0.01


@pytest.mark.parametrize("method", ["disdiff", "hifi-syn", "cyclegan"])
def test_the_engine_runs_both_directions_of_a_new_two_way_checkpoint(method, tmp_path):
    import numpy as np

    from napari_medtrans.core.engine import translate_volume
    from napari_medtrans.core.volume import Volume
    from napari_medtrans.translators.checkpoint import load_translator, save_checkpoint

    if method == "cyclegan":
        torch.manual_seed(0)
        model = create_translator("cyclegan", preset="cpu", width=4, n_blocks=1)
    else:
        model = as_trained(method)
    norm = {"scheme": "percentile", "inputs": {"T1": {"lo": 0.0, "hi": 600.0}},
            "outputs": {"T2": {"lo": 0.0, "hi": 500.0}}, "targets": "volume"}
    path = save_checkpoint(model, tmp_path / f"{method}.safetensors", normalisation=norm)
    rng = np.random.default_rng(0)
    for direction in ("T1->T2", "T2->T1"):
        twin = load_translator(path, direction=direction)
        source = direction.split("->")[0]
        vol = Volume(rng.random((32, 32, 2), dtype=np.float32) * 100, np.eye(4), modality=source)
        out = translate_volume(vol, twin, device="cpu", precision="fp32", steps=2, seed=0).volume
        assert out.shape == (32, 32, 2) and np.isfinite(out.data).all() and out.modality == twin.spec.outputs[0]


@pytest.mark.parametrize("method", ["disdiff", "hifi-syn"])
def test_other_negatives_teach_a_modality_discriminator_to_reject_the_other_modality(method):
    """With ``other_negatives`` D^T2 is trained on real T1 slices as fakes: after a few discriminator steps it scores
    real T2 above real T1; the loss has the extra term only when the key is set."""
    t1, t2 = toy_brain()
    scores = {}
    for flag in (False, True):
        torch.manual_seed(0)
        model = create_translator(method, preset="cpu", width=4, use_diffusion=False, other_negatives=flag) \
            if method == "disdiff" else create_translator(method, preset="cpu", width=4, other_negatives=flag)
        net = model.net.train()
        opt = torch.optim.Adam(net.dis["T2"].parameters(), lr=2e-3)
        for _ in range(15):
            with torch.no_grad():
                out = net.forward_pair(t1, t2)
            loss = net.discriminator_losses(out, use_content=False)["dis"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            scores[flag] = float(net.dis["T2"](t2).mean() - net.dis["T2"](t1).mean())
    assert scores[True] > 1.0 and scores[True] > scores[False] + 0.5


def test_gan_mode_is_checked_and_reaches_the_backbone():
    model = create_translator("disdiff", preset="cpu", width=4, gan_mode="lsgan")
    assert model.net.gan_mode == "lsgan"
    assert create_translator("hifi-syn", preset="cpu", width=4).net.gan_mode == "bce"
    with pytest.raises(Exception, match="GAN loss"):
        create_translator("hifi-syn", preset="cpu", width=4, gan_mode="hinge")
