import math

import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators.base import create_translator
from napari_medtrans.translators.hifisyn import (
    BrainMemoryBank,
    contrastive_loss,
    ggd_loss,
    pgd_loss,
    sgd_loss,
    sgd_weights,
)

# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _tiny_bank(alpha_p=0.01):
    """Item 0 belongs to label 0, item 1 is global; keys e_x, e_y; T1 values e_x, e_y; T2 values -e_x, -e_y."""
    bank = BrainMemoryBank(2, 2, ("T1", "T2"), structure_items=(1,), global_items=1, alpha_p=alpha_p)
    bank.keys.copy_(torch.eye(2))
    bank.values("T1").copy_(torch.eye(2))
    bank.values("T2").copy_(-torch.eye(2))
    return bank


def test_paper_layout_has_20_items():
    bank = BrainMemoryBank(8, 4)
    assert bank.n_items == 20
    assert bank.item_class.tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3] + [-1] * 10
    assert torch.allclose(bank.keys.norm(dim=1), torch.ones(20))


def test_read_matches_a_hand_computation():
    bank = _tiny_bank()
    q = torch.tensor([[2.0, 1.0]])
    s0, s1 = 2 / math.sqrt(5), 1 / math.sqrt(5)  # Eq. 2
    w0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))  # Eq. 1
    # labelled 0: reads its structure item and the global item (Eq. 3)
    out = bank.read_queries(q, "T1", torch.tensor([0]))
    torch.testing.assert_close(out, torch.tensor([[w0, 1 - w0]]))
    torch.testing.assert_close(bank.read_queries(q, "T2", torch.tensor([0])), torch.tensor([[-w0, w0 - 1]]))
    # another label, or no label: global item only
    torch.testing.assert_close(bank.read_queries(q, "T1", torch.tensor([3])), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(bank.read_queries(q, "T1"), torch.tensor([[0.0, 1.0]]))
    # a content map reads pixel by pixel
    content = torch.tensor([[2.0, 0.0], [1.0, 3.0]]).reshape(1, 2, 1, 2)  # pixels (2,1) and (0,3)
    got = bank.read(content, "T1", torch.tensor([[[0, 0]]]))
    assert got.shape == (1, 2, 1, 2)
    torch.testing.assert_close(got[0, :, 0, 0], torch.tensor([w0, 1 - w0]))


def test_update_matches_a_hand_computation():
    bank = _tiny_bank(alpha_p=0.01)
    # T1 queries: (3, 1) is closest to item 0, (1, 2) and (1, 4) to item 1 (all labelled 0: both items readable)
    q = torch.tensor([[3.0, 1.0], [1.0, 2.0], [1.0, 4.0]])
    a = torch.tensor([[1.0, 1.0], [0.0, 2.0], [2.0, 0.0]])
    bank.update({"T1": q}, {"T1": a}, {"T1": torch.tensor([0, 0, 0])})
    # Eq. 6: item 0 is picked by query 0 alone (u = 1); item 1 by queries 1 and 2, softmax of their similarities
    c1, c2 = 2 / math.sqrt(5), 4 / math.sqrt(17)
    u1, u2 = math.exp(c1) / (math.exp(c1) + math.exp(c2)), math.exp(c2) / (math.exp(c1) + math.exp(c2))

    def unit(v):
        v = torch.tensor(v)
        return v / v.norm()

    k0 = unit([0.01 * 1 + 0.99 * 3, 0.99 * 1])  # Eq. 4
    k1 = unit([0.99 * (u1 * 1 + u2 * 1), 0.01 + 0.99 * (u1 * 2 + u2 * 4)])
    torch.testing.assert_close(bank.keys, torch.stack([k0, k1]))
    v0 = unit([0.01 + 0.99 * 1, 0.99 * 1])  # Eq. 5
    v1 = unit([0.99 * (u2 * 2), 0.01 + 0.99 * (u1 * 2)])
    torch.testing.assert_close(bank.values("T1"), torch.stack([v0, v1]))
    # T2 values are untouched: no T2 query
    torch.testing.assert_close(bank.values("T2"), -torch.eye(2))


def test_update_leaves_items_no_query_picks():
    bank = _tiny_bank()
    bank.update({"T1": torch.tensor([[0.0, 5.0]])}, {"T1": torch.tensor([[3.0, 4.0]])})  # unlabelled: global only
    torch.testing.assert_close(bank.keys[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(bank.values("T1")[0], torch.tensor([1.0, 0.0]))
    expected = torch.tensor([0.99 * 3.0, 0.01 + 0.99 * 4.0])
    torch.testing.assert_close(bank.values("T1")[1], expected / expected.norm())
    k = torch.tensor([0.0, 0.01 + 0.99 * 5.0])
    torch.testing.assert_close(bank.keys[1], k / k.norm())


def _aligned_and_shuffled(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*shape, generator=g)
    aligned = a + 0.05 * torch.randn(*shape, generator=g)
    perm = torch.roll(torch.arange(shape[0]), 1)
    return a, aligned, aligned[perm]


def test_contrastive_losses_are_lower_for_aligned_than_for_shuffled_features():
    a, aligned, shuffled = _aligned_and_shuffled((6, 16))
    assert float(contrastive_loss(a, aligned)) < float(contrastive_loss(a, shuffled))
    # GGD (Eq. 12) on content maps of 4 slices
    z, z_al, z_sh = _aligned_and_shuffled((4, 3, 4, 4), seed=1)
    assert float(ggd_loss(z, z_al)) < float(ggd_loss(z, z_sh))
    # PGD (Eq. 7): shuffle pixels in space
    z_px_sh = z_al.flatten(2)[:, :, torch.roll(torch.arange(16), 3)].reshape(z.shape)
    assert float(pgd_loss(z, z_al, max_pixels=64)) < float(pgd_loss(z, z_px_sh, max_pixels=64))
    # SGD (Eq. 11): structures from a label map; shuffle subjects
    labels = torch.zeros(4, 4, 4, dtype=torch.long)
    labels[:, 1:3, 1:3] = 2
    labels[:, :, 3] = 1
    assert float(sgd_loss(z, z_al, labels)) < float(sgd_loss(z, z_sh, labels))


def test_sgd_weights_rank_the_largest_deformation_first():
    w = sgd_weights(torch.tensor([0.1, 5.0, 2.0]), alpha_s=0.5)
    torch.testing.assert_close(w, torch.tensor([math.exp(-1.0), 1.0, math.exp(-0.5)]))


def _model(**kw):
    torch.manual_seed(0)
    cfg = dict(preset="cpu", width=8, disc_width=8, attr_dim=4)
    cfg.update(kw)
    return create_translator("hifi-syn", **cfg)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x_i = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    x_j = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    labels = torch.randint(0, 4, (2, 16, 16), generator=g)
    return x_i, x_j, labels


def test_training_step_lowers_the_loss_and_updates_the_bank():
    model = _model().train()
    x_i, x_j, labels = _batch()
    opt = torch.optim.Adam(model.net.generator_parameters(), lr=2e-3)
    keys_before = model.bank.keys.clone()
    first = None
    for step in range(6):
        out = model.forward_train(x_i, x_j, labels, labels)
        losses = model.generator_losses(out, generator=torch.Generator().manual_seed(0))
        if step == 0:
            assert set(losses) == {"content", "domain", "cyc", "rec", "pgd", "sgd", "ggd", "total"}
            assert all(torch.isfinite(v) for v in losses.values()) and float(losses["sgd"]) != 0
            first = float(losses["total"])
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        model.update_memory(out)
    assert float(losses["total"]) < first
    assert not torch.equal(keys_before, model.bank.keys)
    d = model.discriminator_losses(out)
    assert torch.isfinite(d["total"])


def test_translate_needs_no_labels_and_is_deterministic():
    model = _model().eval()
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        a, b = model.translate(x).image, model.translate(x).image
    assert a.shape == x.shape and torch.equal(a, b) and a.abs().max() <= 1
    assert model.spec.inputs == ("T1",) and model.spec.outputs == ("T2",) and not model.spec.paired


def test_ablations_switch_terms_off():
    x_i, x_j, labels = _batch()
    model = _model(use_labels=False, lambdas={"pgd": 0, "ggd": 0})
    losses = model.generator_losses(model.forward_train(x_i, x_j, labels, labels))
    assert float(losses["sgd"]) == float(losses["pgd"]) == float(losses["ggd"]) == 0.0
    no_bank = _model(use_bmb=False).eval()
    with torch.no_grad():
        assert no_bank.translate(x_i).image.shape == x_i.shape


def test_cycle_reads_the_bank_so_the_attribute_map_cannot_carry_the_image():
    """The cross-cycle's second translation reads the memory bank (default), not the input's own attribute map:
    the cycle image then depends on the input only through the translation's content."""
    x_i, x_j, labels = _batch()
    model = _model().eval()
    with torch.no_grad():
        out = model.forward_train(x_i, x_j, labels, labels)
        lab = out["labels_i"]  # x_i's labels on the content grid, which fake_j's content carries
        want = model.net.decode(out["zc_fj"], model.bank.read(out["zc_fj"], "T1", lab), "T1")
        torch.testing.assert_close(out["cyc_i"], want)
        own = _model(cycle_attr="encoder").eval()
        out = own.forward_train(x_i, x_j, labels, labels)
        torch.testing.assert_close(out["cyc_i"], own.net.decode(out["zc_fj"], out["za_i"], "T1"))
    with pytest.raises(UnknownChoiceError, match="cycle"):
        _model(cycle_attr="random")


def test_checkpoint_round_trip(tmp_path):
    from napari_medtrans.translators.checkpoint import load_translator, save_checkpoint

    model = _model(structure_items=[1, 1, 1, 1]).eval()
    model.update_memory(model.forward_train(*_batch()))
    path = tmp_path / "hifi.safetensors"
    save_checkpoint(model, path)
    again = load_translator(path).eval()
    x = _batch()[0]
    with torch.no_grad():
        torch.testing.assert_close(again.translate(x).image, model.translate(x).image)
    torch.testing.assert_close(again.bank.keys, model.bank.keys)


def test_bad_config_is_named():
    with pytest.raises(UnknownChoiceError):
        _model(preset="huge")
    with pytest.raises(ValueError, match="source"):
        _model(source="T2")
    with pytest.raises(UnknownChoiceError):
        _model(lambdas={"pgdd": 1})
    with pytest.raises(UnknownChoiceError):
        _model(unlabelled_read="some")
