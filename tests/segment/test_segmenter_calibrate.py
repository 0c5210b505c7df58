"""The segmenter's decision threshold (stored in its file) and `medtrans segmenter calibrate`, which chooses it on a
dataset's validation subjects with the Table III box protocol."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_medtrans.cli import main  # noqa: E402
from napari_medtrans.core.errors import ConfigMismatchError  # noqa: E402
from napari_medtrans.core.volume import Volume  # noqa: E402
from napari_medtrans.phantom import write_phantom_dataset  # noqa: E402
from napari_medtrans.segment import SlicePrompt  # noqa: E402
from napari_medtrans.segment.promptnet import (PromptSegmenter, PromptUNet, encode_prompts,  # noqa: E402
                                                    frames01, load_promptunet, save_promptunet)
from napari_medtrans.segment.frames import FrameGeometry  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _volume():
    rng = np.random.default_rng(0)
    return Volume(rng.random((24, 20, 4)).astype(np.float32), np.eye(4))


def test_the_files_threshold_decides_the_mask(tmp_path):
    """A file saved with threshold t gives the mask logits > t (not > 0); an older file without one gives > 0."""
    torch.manual_seed(0)
    net = PromptUNet(width=4, depth=3).eval()
    vol = _volume()
    prompt = SlicePrompt(1, box=(2, 2, 20, 15))
    geom = FrameGeometry.of(vol)
    frames, _ = frames01(vol, geom)
    with torch.inference_mode():
        x = torch.from_numpy(encode_prompts(frames[1], prompt)[None])
        x = torch.nn.functional.pad(x, (0, (-x.shape[3]) % 8, 0, (-x.shape[2]) % 8), mode="replicate")
        logits = net(x)[0, 0, :frames.shape[1], :frames.shape[2]].numpy()
    t = float(np.quantile(logits, 0.7))
    plain, _ = load_promptunet(save_promptunet(net, tmp_path / "a.safetensors"))
    tuned, meta = load_promptunet(save_promptunet(net, tmp_path / "b.safetensors", {"threshold": t}))
    assert float(meta["threshold"]) == t
    a = geom.to_frames(PromptSegmenter(plain).segment_slices(vol, prompt).mask)[1]
    b = geom.to_frames(PromptSegmenter(tuned).segment_slices(vol, prompt).mask)[1]
    np.testing.assert_array_equal(a, logits > 0)
    np.testing.assert_array_equal(b, logits > t)
    assert b.sum() < a.sum() or not a.any()


@pytest.mark.parametrize("value", ["nan", "inf", "high"])
def test_a_bad_threshold_is_refused_naming_the_file(tmp_path, value):
    net = PromptUNet(width=4, depth=2)
    path = save_promptunet(net, tmp_path / "odd.safetensors", {"threshold": value})
    with pytest.raises(ConfigMismatchError, match="odd.safetensors.*threshold|threshold.*odd.safetensors"):
        load_promptunet(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal") / "data"
    write_phantom_dataset(root, 3, shape=(40, 48, 12), tumour=1.0, split=(0.0, 1.0, 0.0),
                          contrasts=("T1", "FLAIR"))
    return root


def test_calibrate_chooses_the_best_threshold_on_validation_and_writes_it(data, tmp_path, capsys):
    torch.manual_seed(1)
    net = PromptUNet(width=4, depth=2)
    with torch.no_grad():  # a network whose logits follow the image inside the box: thresholds matter
        net.head.bias.fill_(0.0)
    src = save_promptunet(net, tmp_path / "in.safetensors", {"command": "test"})
    out = tmp_path / "out.safetensors"
    assert main(["segmenter", "calibrate", "--model", str(src), "--data", str(data), "--out", str(out),
                 "--contrasts", "FLAIR", "--grid", "-1", "0", "1"]) == 0
    printed = capsys.readouterr().out
    model, meta = load_promptunet(out)
    cal = json.loads(meta["calibration"])
    assert meta["command"] == "test"  # the source's metadata is kept
    assert cal["split"] == "val" and len(cal["subjects"]) == 3
    means = {float(k): v for k, v in cal["mean_dice"].items()}
    assert set(means) == {-1.0, 0.0, 1.0}
    assert float(meta["threshold"]) == max(means, key=means.get)
    assert f"threshold {float(meta['threshold']):g}" in printed
    for name, p in model.state_dict().items():  # the weights are the source's
        torch.testing.assert_close(p, net.state_dict()[name])
    # a grid value that is not finite, or an output that would overwrite the source, is refused
    assert main(["segmenter", "calibrate", "--model", str(src), "--data", str(data), "--out", str(src)]) != 0
    assert "overwrite" in capsys.readouterr().err
