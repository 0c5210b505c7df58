import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators.disentangle import DisentangleNet, gan_loss

# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _net(**kw):
    torch.manual_seed(0)
    cfg = dict(width=8, n_res=1, attr_dim=4, disc_width=8, disc_layers=2)
    cfg.update(kw)
    return DisentangleNet(("T1", "T2"), **cfg)


def _pair(b=2, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, size, size, generator=g) * 2 - 1, torch.rand(b, 1, size, size, generator=g) * 2 - 1)


def test_shapes_of_content_attribute_and_translations():
    net = _net()
    x_i, x_j = _pair()
    out = net.forward_pair(x_i, x_j)
    assert out["zc_i"].shape == (2, 32, 4, 4) and out["za_j"].shape == (2, 4)
    for key in ("fake_i", "fake_j", "rec_i", "rec_j", "cyc_i", "cyc_j"):
        assert out[key].shape == x_i.shape
        assert out[key].abs().max() <= 1.0
    assert net.translate(x_i, "T1", "T2").shape == x_i.shape


def test_losses_are_finite_and_switch_off_with_zero_weights():
    net = _net()
    out = net.forward_pair(*_pair())
    g = net.generator_losses(out)
    assert set(g) >= {"rec", "cyc", "adv", "content", "kl", "total"}
    assert all(torch.isfinite(v) for v in g.values())
    only_rec = net.generator_losses(out, lambda_cyc=0, lambda_adv=0, lambda_content=0, lambda_kl=0, lambda_rec=1)
    assert torch.allclose(only_rec["total"], g["rec"])
    d = net.discriminator_losses(out)
    assert torch.isfinite(d["total"]) and float(d["content"]) > 0
    assert float(net.discriminator_losses(out, use_content=False)["content"]) == 0.0


def test_a_few_generator_steps_lower_the_reconstruction_loss():
    net = _net()
    x_i, x_j = _pair(size=16)
    opt = torch.optim.Adam(net.generator_parameters(), lr=2e-3)
    first = None
    for _ in range(8):
        losses = net.generator_losses(net.forward_pair(x_i, x_j), lambda_adv=0, lambda_content=0)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        first = float(losses["rec"]) if first is None else first
    assert float(losses["rec"]) < first


def test_discriminator_step_lowers_its_loss_and_leaves_generators_alone():
    net = _net()
    out = net.forward_pair(*_pair())
    gen_before = [p.detach().clone() for p in net.generator_parameters()]
    opt = torch.optim.Adam(net.discriminator_parameters(), lr=1e-2)
    first = float(net.discriminator_losses(out)["total"])
    for _ in range(5):
        loss = net.discriminator_losses(out)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(net.discriminator_losses(out)["total"]) < first
    assert all(torch.equal(a, b) for a, b in zip(gen_before, net.generator_parameters()))


def test_mean_attribute_tracks_training_batches_and_is_in_the_state_dict():
    net = _net()
    assert torch.count_nonzero(net.mean_attribute("T2")) == 0
    x_i, x_j = _pair()
    net.train().forward_pair(x_i, x_j)
    _, za_j = net.encode(x_j, "T2")
    torch.testing.assert_close(net.mean_attribute("T2")[0], 0.01 * za_j.detach().mean(0))
    assert "attr_mean_T2" in net.state_dict()
    before = net.mean_attribute("T1").clone()
    net.eval().forward_pair(x_i, x_j)  # eval does not update
    assert torch.equal(before, net.mean_attribute("T1"))


def test_reference_attribute_changes_the_translation():
    net = _net().eval()
    x_i, x_j = _pair()
    with torch.no_grad():
        a = net.translate(x_i, "T1", "T2")
        b = net.translate(x_i, "T1", "T2", reference=x_j[:1])
    assert not torch.allclose(a, b)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="modalities"):
        DisentangleNet(("T1", "T1"))
    with pytest.raises(UnknownChoiceError):
        _net(gan_mode="wgan")
    net = _net()
    with pytest.raises(UnknownChoiceError):
        net.encode(torch.zeros(1, 1, 16, 16), "FLAIR")
    with pytest.raises(ValueError, match="multiples of 4"):
        net.encode(torch.zeros(1, 1, 18, 18), "T1")


def test_gan_loss_targets():
    logits = torch.tensor([10.0, 10.0])
    assert float(gan_loss(logits, 1.0)) < 1e-3 < float(gan_loss(logits, 0.0))
    assert float(gan_loss(torch.zeros(3), 0.5, "lsgan")) == pytest.approx(0.25)


def test_spatial_attributes_and_a_custom_cross_attribute():
    net = _net(attr_spatial=True)
    x_i, x_j = _pair()
    zc, za = net.encode(x_i, "T1")
    assert za.shape == (2, 4, 4, 4) and zc.shape[-2:] == za.shape[-2:]
    seen = []

    def cross(content, target):
        seen.append(target)
        return torch.zeros(content.shape[0], 4, *content.shape[-2:])

    out = net.train().forward_pair(x_i, x_j, cross_attr=cross)
    assert sorted(seen) == ["T1", "T2"]
    assert out["fake_j"].shape == x_i.shape
    # a zero attribute map gives the same image as a zero attribute vector (tiled)
    torch.testing.assert_close(net.decode(out["zc_i"], torch.zeros(2, 4), "T2"), out["fake_j"])
    assert net.mean_attribute("T1").shape == (1, 4)
