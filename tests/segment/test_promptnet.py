"""The shipped promptable segmenter (issue 23): prompt encoding, the Segmenter interface, propagation that stops
where the object ends, safe loading with clear errors, the default without imported weights, HD95."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_medtrans.core.errors import CheckpointError, ConfigMismatchError, SegmentationCancelled  # noqa: E402
from napari_medtrans.core.metrics import hd95  # noqa: E402
from napari_medtrans.segment import SHIPPED, FrameGeometry, Segmenter, SlicePrompt, default_model  # noqa: E402
from napari_medtrans.segment.models import shipped_path, weights_available  # noqa: E402
from napari_medtrans.segment.promptnet import (PromptSegmenter, PromptUNet, encode_prompts,  # noqa: E402
                                                    load_promptunet, save_promptunet)
from napari_medtrans.core.volume import Volume  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class BoxedBrightness(torch.nn.Module):
    """A stand-in network: the mask is the bright part of the image inside the prompt's box (channel 1)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return ((x[:, :1] > 0.5) & (x[:, 1:2] > 0.5)).float() * 2 - 1 + self.w


def _tube(n=10, first=2, last=5):
    data = np.zeros((24, 20, n), np.float32)
    data[...] = 10.0
    data[6:12, 5:10, first:last + 1] = 100.0  # a bright block on slices first..last
    return Volume(data, np.diag([1.0, 1.0, 2.0, 1.0]), modality="FLAIR")


def test_prompt_channels_hold_the_box_the_clicks_and_the_prior():
    image = np.full((12, 16), 0.3, np.float32)
    prior = np.zeros((12, 16), bool)
    prior[2:4, 2:4] = True
    p = SlicePrompt(0, points=[(3, 5), (10, 8)], labels=[1, 0], box=(2, 1, 6, 9))
    x = encode_prompts(image, p, prior)
    assert x.shape == (5, 12, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], image)
    assert x[1, 1:10, 2:7].min() == 1 and x[1].sum() == 9 * 5  # the box, corners included (SAM's convention)
    assert x[2, 5, 3] == pytest.approx(1) and x[2, 8, 10] < 1e-3  # the positive click only in channel 2
    assert x[3, 8, 10] == pytest.approx(1) and x[3, 5, 3] < 1e-3
    np.testing.assert_array_equal(x[4], prior.astype(np.float32))
    # propagation: no user box, the prior's box is used
    y = encode_prompts(image, None, prior, extra_box=(1, 1, 4, 4))
    assert y[1].sum() == 16 and y[2].max() == 0


def test_slices_and_propagation_follow_the_object_and_stop_where_it_ends():
    vol = _tube()
    seg = PromptSegmenter(BoxedBrightness(), name="boxed")
    geom = FrameGeometry.of(vol)
    frames_truth = geom.to_frames(vol.data > 50)
    key = 3
    rows = np.flatnonzero(frames_truth[key].any(1))
    cols = np.flatnonzero(frames_truth[key].any(0))
    box = (cols[0], rows[0], cols[-1], rows[-1])
    one = seg.segment_slices(vol, SlicePrompt(key, box=box))
    assert one.slices == [key] and one.mask.shape == vol.shape
    assert one.embeddings_computed == 0 and seg.precompute(vol) == 0  # nothing to cache
    np.testing.assert_array_equal(geom.to_frames(one.mask)[key], frames_truth[key])

    seen = []
    res = seg.propagate(vol, SlicePrompt(key, box=box), progress=lambda d, t: seen.append((d, t)))
    np.testing.assert_array_equal(res.mask, vol.data > 50)  # every slice of the block, nothing beyond
    # forward 4, 5, then 6 (empty: the object ended, 7.. never computed); backward 2, then 1 (empty)
    assert res.slices == [3, 4, 5, 6, 2, 1]
    assert seen[-1] == (10, 10)  # the bar ends full
    fwd = seg.propagate(vol, SlicePrompt(key, box=box), direction="forward")
    assert fwd.slices == [3, 4, 5, 6] and not fwd.mask[..., :3].any()

    with pytest.raises(SegmentationCancelled):
        seg.propagate(vol, SlicePrompt(key, box=box), should_cancel=lambda: True)
    with pytest.raises(ValueError, match="outside"):
        seg.segment_slices(vol, SlicePrompt(key, box=(0, 0, 50, 50)))


def test_a_random_network_runs_any_slice_size_and_round_trips_through_safetensors(tmp_path):
    torch.manual_seed(0)
    net = PromptUNet(width=4, depth=3)
    path = save_promptunet(net, tmp_path / "net.safetensors", {"note": "test"})
    loaded, meta = load_promptunet(path)
    assert meta["note"] == "test"
    vol = Volume(np.random.default_rng(0).random((13, 11, 3)).astype(np.float32), np.eye(4))
    a = PromptSegmenter(net.eval()).segment_slices(vol, SlicePrompt(1, box=(1, 1, 8, 9)))
    b = PromptSegmenter(loaded).segment_slices(vol, SlicePrompt(1, box=(1, 1, 8, 9)))
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.mask.shape == (13, 11, 3)


def test_bad_files_are_refused_with_the_file_named(tmp_path):
    demo = ROOT / "resources" / "models" / "demo-t1-t2.safetensors"
    with pytest.raises(ConfigMismatchError, match="not a promptunet segmenter") as exc:
        load_promptunet(demo)
    assert "demo-t1-t2.safetensors" in str(exc.value)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(shipped_path().read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_promptunet(cut)


def test_without_imported_weights_the_shipped_segmenter_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path))
    assert not weights_available("medsam2") and weights_available(SHIPPED)
    assert default_model() == SHIPPED
    seg = Segmenter.from_name(SHIPPED, device="cpu")
    assert isinstance(seg, PromptSegmenter) and seg.name == SHIPPED
    assert seg.model_key[1] == str(shipped_path())


def test_hd95_matches_a_hand_computation():
    a = np.zeros((20, 20, 20), bool)
    a[5:10, 5:10, 5:10] = True
    b = np.zeros_like(a)
    b[7:12, 5:10, 5:10] = True  # shifted by 2 voxels along i
    assert hd95(a, b) == pytest.approx(2.0)
    assert hd95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(4.0)
    assert hd95(a, a) == 0.0 and hd95(a * 0, b * 0) == 0.0
    assert np.isnan(hd95(a, b * 0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, b, spacing=(1, 1))


def test_the_shipped_segmenter_meets_its_card_on_the_demo_subject(one_torch_thread):
    """The card's figures for the demo subject (seed 1000, FLAIR, ground-truth boxes), read from the card."""
    import re

    from napari_medtrans.core.metrics import dice
    from napari_medtrans.segment import prompts_from_mask
    from napari_medtrans.phantom import make_subject

    card = shipped_path().with_suffix(".md").read_text()
    m = re.search(r"On the demo subject \(seed 1000.*?whole tumour ([0-9.]+), core ([0-9.]+), enhancing\s+([0-9.]+)",
                  card, re.S)
    assert m, "the card gives the demo subject's figures"
    expected = dict(zip(("whole", "core", "enhancing"), map(float, m.groups())))
    s = make_subject(1000, tumour=True, contrasts=("FLAIR",))
    labels = np.rint(s.labels.data)
    geom = FrameGeometry.of(s.labels)
    seg = Segmenter.from_name(SHIPPED, device="cpu")
    for region, values in (("whole", [4, 5, 6]), ("core", [5, 6]), ("enhancing", [5])):
        truth = np.isin(labels, values)
        mask = seg.segment_slices(s.images["FLAIR"], prompts_from_mask(geom.to_frames(truth))).mask
        assert dice(mask, truth) >= expected[region] - 0.01, region
