"""MRNet sees the same field of view at the same scale in training and at inference (issue 20, item 5).

The card's model was trained on 64 x 64 crops, which its encoder saw at their native scale, but inference resized
the whole 128 x 128 slice to the encoder's 64 x 64: every structure half its trained size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from napari_medtrans.core.engine import translate_volume
from napari_medtrans.core.volume import Volume
from napari_medtrans.training.recipe_mrnet import MRNetRecipe
from napari_medtrans.translators import create_translator, load_translator, save_checkpoint


def tiny(**kw):
    torch.manual_seed(0)
    return create_translator("mrnet", **{"width": 4, "depth": 3, "mask_width": 4, **kw})


def _record(model) -> list[tuple[float, float]]:
    """Per generator pass: encoder input pixels per pixel of the image the generator's first stage gets."""
    enc: list[tuple[int, int]] = []
    seen: list[tuple[float, float]] = []
    model.net.encoder.register_forward_pre_hook(lambda m, args: enc.append(tuple(args[0].shape[-2:])))

    def stage(m, args):  # the encoder runs first in every pass (MRNetGenerator.decode)
        h, w = args[0].shape[-2:]
        seen.append((enc[-1][0] / h, enc[-1][1] / w))

    model.net.downs[0].register_forward_pre_hook(stage)
    return seen


class _Crops(Dataset):
    """64 x 64 training crops, the size the card's model was trained on."""

    def __init__(self, n=4):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, 64, 64, generator=g) * 2 - 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input": self.x[i], "target": self.x[i].flip(-1), "mask": torch.ones(1, 64, 64)}


def test_training_and_inference_feed_the_encoder_at_one_scale(tmp_path, one_torch_thread):
    from napari_medtrans.training.trainer import Trainer

    model = tiny()
    seen = _record(model)
    Trainer(MRNetRecipe(), model, _Crops(), None, out_dir=tmp_path, steps=2, batch_size=2, lr=1e-3,
            checkpoint_every=0, val_every=0, device="cpu", progress=False).fit()
    train_scales = set(seen)
    seen.clear()
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((128, 128, 2), dtype=np.float32) * 100, np.eye(4), modality="T1")
    translate_volume(vol, model, device="cpu", precision="fp32")
    infer_scales = set(seen)
    assert train_scales == {(1.0, 1.0)}
    assert infer_scales == train_scales, f"training {train_scales}, inference {infer_scales}"


def test_a_slice_larger_than_the_tile_is_translated_tile_by_tile(one_torch_thread):
    model = tiny().eval()
    assert model.config["tile"] == 64
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 128, 96, generator=g) * 2 - 1
    with torch.no_grad():
        out = model.translate(x)
        corner = model.translate(x[..., :64, :64])
    assert out.image.shape == (1, 1, 128, 96) and out.maps["masks"].shape == (1, 2, 128, 96)
    # tiles start every 32 pixels: the first 32 x 32 pixels lie in the first tile only
    torch.testing.assert_close(out.image[..., :32, :32], corner.image[..., :32, :32])
    torch.testing.assert_close(out.maps["masks"][..., :32, :32], corner.maps["masks"][..., :32, :32])
    # a slice of one tile is the generator itself
    with torch.no_grad():
        ys, _ = model.net(x[..., :64, :64])
    torch.testing.assert_close(corner.image, ys[-1].clamp(-1, 1))


def test_a_slice_smaller_than_the_tile_is_padded_with_background(one_torch_thread):
    model = tiny().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 32, 40, generator=g) * 2 - 1
    with torch.no_grad():
        out = model.translate(x)
        padded = torch.nn.functional.pad(x, (12, 12, 16, 16), value=-1.0)
        ys, _ = model.net(padded)
    assert out.image.shape == (1, 1, 32, 40)
    torch.testing.assert_close(out.image, ys[-1][..., 16:48, 12:52].clamp(-1, 1))


def test_tile_zero_is_the_old_whole_slice_view():
    model = tiny(tile=0).eval()
    seen = _record(model)
    with torch.no_grad():
        model.translate(torch.zeros(1, 1, 128, 128))
    assert seen == [(0.5, 0.5)]


def test_tile_is_checked_and_kept_in_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="tile"):
        tiny(tile=60)  # not a multiple of 2**depth = 8
    with pytest.raises(ValueError, match="tile"):
        tiny(tile=-8)
    with pytest.raises(ValueError, match="tile"):
        tiny(tile=2**16)  # every slice would be padded to 65536 x 65536
    path = save_checkpoint(tiny(tile=96), tmp_path / "m.safetensors")
    assert load_translator(path).config["tile"] == 96
    # a checkpoint from before the key existed gets its preset's tile (the cpu preset: its 64 x 64 crops)
    assert create_translator("mrnet", width=4, depth=3).config["tile"] == 64
    assert create_translator("mrnet", preset="paper", freeze_encoder=False, width=4, depth=3,
                             encoder="tiny", sam_image_size=64).config["tile"] == 256
