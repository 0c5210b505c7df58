"""Weights store: manifest, import, list, verify, fetch from a local HTTP server, safe loading, CLI."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import pickle
import re
import threading

import pytest
import torch

from napari_medtrans.cli import main as cli_main
from napari_medtrans.core import weights as w
from napari_medtrans.core.errors import ChecksumError, UnknownChoiceError, UnsafeCheckpointError, WeightsError

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)  # several chunks, so progress is called more than once
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/srv; yields (base URL, folder)."""
    root = tmp_path / "srv"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def manifest(monkeypatch):
    """Test entries: one with a full published sha256, one with only a prefix, one with none."""
    entries = [
        w.KnownWeights("full", "full-weights.bin", "http://127.0.0.1:9/full-weights.bin", DIGEST, len(PAYLOAD),
                       "BSD-3-Clause (as published by the owner; check before clinical use)", "test", "test"),
        w.KnownWeights("prefixed", f"prefixed-{DIGEST[:8]}.pth", "http://127.0.0.1:9/p.pth", None, None,
                       "Apache-2.0", "test", "test", sha256_prefix=DIGEST[:8]),
        w.KnownWeights("unhashed", "unhashed.pt", "http://127.0.0.1:9/u.pt", None, None, "Apache-2.0", "test", "test"),
    ]
    monkeypatch.setattr(w, "MANIFEST", entries)
    return {e.name: e for e in entries}


def _store_files(home):
    d = home / "weights"
    return sorted(p.name for p in d.iterdir() if p.name != ".records.json") if d.is_dir() else []


# -- manifest and folders -------------------------------------------------------------------------------
def test_real_manifest_is_complete_and_invents_no_hash():
    names = [e.name for e in w.MANIFEST]
    assert len(set(names)) == len(names)
    assert {"vgg16", "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
            "medsam2_latest"} <= set(names)
    vgg = w.known_weights("vgg16")
    assert vgg.filename == "vgg16-397923af.pth" and vgg.sha256_prefix == "397923af"
    assert vgg.url == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert w.known_weights("sam2.1_hiera_large").url == (
        "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt"
    )
    assert w.known_weights("medsam2_latest").url.startswith("https://huggingface.co/")
    for e in w.MANIFEST:
        assert e.url.startswith("https://") and e.url.endswith(e.filename)
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256)
        assert "check before clinical use" in e.licence
        assert w.sanitise_filename(e.filename) == e.filename


def test_store_dir_follows_env_else_platform(home, monkeypatch):
    assert w.store_dir() == home / "weights"
    monkeypatch.delenv("MEDTRANS_HOME")
    import platformdirs

    assert w.store_dir() == w.Path(platformdirs.user_data_dir("napari-medtrans")) / "weights"


# -- import, list, verify -------------------------------------------------------------------------------
def test_import_unknown_file_then_list_and_verify_detect_changes(home, tmp_path):
    src = tmp_path / "my weights (v2).safetensors"
    src.write_bytes(b"abc" * 1000)
    dest = w.import_weights(src)
    assert dest == home / "weights" / "my_weights__v2_.safetensors"
    assert dest.read_bytes() == src.read_bytes()
    status = {s.name: s for s in w.list_weights()}
    assert status["vgg16"].present is False and "medtrans weights import" in status["vgg16"].message
    mine = status[dest.name]
    assert mine.present and not mine.known and mine.check == "recorded"
    assert mine.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    (only,) = w.verify_weights(dest.name)
    assert only.verified is True and only.check == "recorded"
    dest.write_bytes(b"tampered")
    assert next(s for s in w.list_weights() if s.name == dest.name).verified is None  # changed: not trusted
    (bad,) = w.verify_weights()
    assert bad.verified is False and "does not match" in bad.message


def test_import_matches_known_entries_by_hash_name_or_filename(home, tmp_path, manifest):
    src = tmp_path / "download.bin"
    src.write_bytes(PAYLOAD)
    dest = w.import_weights(src)  # recognised by its sha256
    assert dest.name == "full-weights.bin"
    assert w.weights_path("full") == dest
    (status,) = w.verify_weights("full")
    assert status.verified is True and status.check == "sha256"
    dest2 = w.import_weights(src, name="prefixed")
    assert dest2.name == manifest["prefixed"].filename
    assert next(s for s in w.list_weights() if s.name == "prefixed").verified is True
    dest3 = w.import_weights(src, name="unhashed")
    (status3,) = w.verify_weights("unhashed")
    assert dest3.name == "unhashed.pt" and status3.verified is True and status3.check == "recorded"


def test_import_with_wrong_checksum_is_refused_and_leaves_nothing(home, tmp_path, manifest):
    bad = tmp_path / "full-weights.bin"  # the manifest's file name, but other bytes
    bad.write_bytes(b"not the published file")
    for call in (lambda: w.import_weights(bad), lambda: w.import_weights(bad, name="full"),
                 lambda: w.import_weights(bad, name="prefixed")):
        with pytest.raises(ChecksumError) as err:
            call()
        assert str(bad) in str(err.value) and "does not match" in str(err.value)
    assert _store_files(home) == []


@pytest.mark.parametrize("name", ["../evil.pt", "..", "/etc/passwd", "sub/dir.pt", "..\\win.pt", "C:evil.pt", ""])
def test_path_traversal_names_are_refused(home, tmp_path, name):
    src = tmp_path / "x.pt"
    src.write_bytes(b"x")
    with pytest.raises(WeightsError, match="plain file name"):
        w.import_weights(src, name=name)
    assert not (tmp_path / "evil.pt").exists() and not (home / "evil.pt").exists()
    assert _store_files(home) == []


def test_sanitised_and_typo_names(home, tmp_path):
    src = tmp_path / "x.pt"
    src.write_bytes(b"x")
    assert w.import_weights(src, name=".hidden weights").name == "_hidden_weights.pt"
    with pytest.raises(UnknownChoiceError, match="Did you mean 'sam2.1_hiera_tiny'"):
        w.import_weights(src, name="sam2.1_hiera_tny")
    other = tmp_path / "y.pt"
    other.write_bytes(b"y")
    with pytest.raises(WeightsError, match="already in the store"):
        w.import_weights(other, name="_hidden_weights.pt")
    assert w.import_weights(other, name="_hidden_weights.pt", overwrite=True).read_bytes() == b"y"


def test_weights_path_tells_how_to_get_missing_files(home):
    with pytest.raises(WeightsError) as err:
        w.weights_path("sam2.1_hiera_tiny")
    msg = str(err.value)
    assert "medtrans weights fetch sam2.1_hiera_tiny" in msg and "medtrans weights import" in msg
    with pytest.raises(UnknownChoiceError, match="vgg16"):
        w.weights_path("vgg61")


# -- fetch ----------------------------------------------------------------------------------------------
def test_fetch_good_file_verifies_and_reports_progress(home, server, manifest):
    url, root = server
    (root / "good.bin").write_bytes(PAYLOAD)
    calls = []
    dest = w.fetch_weights("full", url=f"{url}/good.bin", progress=lambda d, t: calls.append((d, t)))
    assert dest == home / "weights" / "full-weights.bin" and dest.read_bytes() == PAYLOAD
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert len(calls) >= 4 and all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    (status,) = w.verify_weights("full")
    assert status.verified is True
    assert _store_files(home) == ["full-weights.bin"]


def test_fetch_wrong_checksum_raises_and_leaves_no_file(home, server, manifest):
    url, root = server
    (root / "bad.bin").write_bytes(PAYLOAD[:-1] + b"!")
    for name in ("full", "prefixed"):
        with pytest.raises(ChecksumError) as err:
            w.fetch_weights(name, url=f"{url}/bad.bin")
        assert f"{url}/bad.bin" in str(err.value) and "discarded" in str(err.value)
    assert _store_files(home) == []


def test_fetch_network_errors_name_url_and_hint(home, server, manifest):
    url, _ = server
    with pytest.raises(WeightsError) as err:
        w.fetch_weights("full", url=f"{url}/absent.bin")
    assert "HTTP 404" in str(err.value) and f"{url}/absent.bin" in str(err.value)
    assert "medtrans weights import PATH --name full" in str(err.value)
    with pytest.raises(WeightsError, match="127.0.0.1:9"):  # discard port: connection refused
        w.fetch_weights("full", timeout=5)
    with pytest.raises(WeightsError, match="only http and https"):
        w.fetch_weights("full", url="file:///etc/passwd")
    with pytest.raises(UnknownChoiceError):
        w.fetch_weights("nope")
    assert _store_files(home) == []


# -- safe loading ---------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_load_state_dict_is_safe(tmp_path):
    from safetensors.torch import save_file

    sd = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)}
    save_file(sd, tmp_path / "w.safetensors")
    torch.save({"model": sd, "epoch": 3}, tmp_path / "sam.pt")  # SAM2 wraps its state dict in "model"
    for name in ("w.safetensors", "sam.pt"):
        got = w.load_state_dict(tmp_path / name)
        assert set(got) == {"a", "b"} and torch.equal(got["a"], sd["a"]) and got["b"].dtype == torch.int64
    marker = tmp_path / "ran"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"a": _Evil(marker)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        w.load_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


# -- CLI ------------------------------------------------------------------------------------------------
def test_cli_list_import_fetch_verify(home, tmp_path, server, manifest, capsys):
    url, root = server
    (root / "good.bin").write_bytes(PAYLOAD)
    assert cli_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(home / "weights") in out and "full" in out and "missing" in out
    assert cli_main(["weights", "fetch", "full", "--url", f"{url}/good.bin"]) == 0
    cap = capsys.readouterr()
    assert "100.0%" in cap.err and "sha256 verified" in cap.out
    src = tmp_path / "custom.pt"
    src.write_bytes(b"custom")
    assert cli_main(["weights", "import", str(src)]) == 0
    assert "custom.pt" in capsys.readouterr().out
    assert cli_main(["weights", "verify"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"full\s+ok\s+sha256", out) and re.search(r"custom.pt\s+ok\s+recorded", out)
    (home / "weights" / "custom.pt").write_bytes(b"changed")
    assert cli_main(["weights", "verify"]) == 1
    assert re.search(r"custom.pt\s+BAD", capsys.readouterr().out)
    assert cli_main(["weights", "import", str(src), "--name", "../x"]) == 2
    assert "plain file name" in capsys.readouterr().err


def test_cli_help_is_readable(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["weights", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("list", "import", "fetch", "verify", "MEDTRANS_HOME", "offline"):
        assert word in out
