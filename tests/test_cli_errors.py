"""The CLI's error contract: one line on stderr naming the path and the problem, exit status 2, no traceback,
also for exceptions a command did not turn into a MedtransError (the last-resort handler)."""

from __future__ import annotations

import errno

import pytest

from napari_medtrans._cli import info
from napari_medtrans.cli import main
from napari_medtrans.core.errors import VolumeReadError


def _fail_with(monkeypatch, exc):
    def run(args):
        raise exc

    monkeypatch.setattr(info, "run", run)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_os_error_names_its_file(monkeypatch, capsys, tmp_path):
    _fail_with(monkeypatch, PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.dcm")))
    assert main(["info", str(tmp_path)]) == 2
    assert _one_line(capsys) == f"medtrans info: error: {tmp_path / 'x.dcm'}: permission denied"


def test_os_error_without_a_file_names_the_input(monkeypatch, capsys, tmp_path):
    _fail_with(monkeypatch, OSError(errno.EIO, "Input/output error"))
    assert main(["info", str(tmp_path)]) == 2
    assert _one_line(capsys) == f"medtrans info: error: {tmp_path}: input/output error"


def test_file_where_a_folder_was_to_be_made(monkeypatch, capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    _fail_with(monkeypatch, FileExistsError(errno.EEXIST, "File exists", str(tmp_path / "f")))
    assert main(["info", str(tmp_path)]) == 2
    assert _one_line(capsys).endswith(f"{tmp_path / 'f'}: already exists and is not a folder")


def test_memory_error_names_the_input(monkeypatch, capsys, tmp_path):
    _fail_with(monkeypatch, MemoryError("Unable to allocate 96.0 GiB"))
    assert main(["info", str(tmp_path)]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"medtrans info: error: {tmp_path}: not enough memory (Unable to allocate 96.0 GiB)")


@pytest.mark.parametrize("exc", [OverflowError("int too large to convert"), IndexError("index 0 is out of bounds"),
                                 TypeError("Cannot interpret '<V3' as a data type")])
def test_anything_else_is_one_line_called_unexpected(monkeypatch, capsys, tmp_path, exc):
    _fail_with(monkeypatch, exc)
    assert main(["info", str(tmp_path)]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"medtrans info: error: {tmp_path}: unexpected error ({type(exc).__name__}: {exc})")
    assert "MEDTRANS_DEBUG=1" in line


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    _fail_with(monkeypatch, OverflowError("boom"))
    monkeypatch.setenv("MEDTRANS_DEBUG", "1")
    with pytest.raises(OverflowError):
        main(["info", str(tmp_path)])


def test_a_message_with_line_breaks_becomes_one_line(monkeypatch, capsys, tmp_path):
    _fail_with(monkeypatch, VolumeReadError("cannot be read (Expected 2048 bytes\n - could the file be damaged?)",
                                            tmp_path / "a.nii"))
    assert main(["info", str(tmp_path)]) == 2
    assert _one_line(capsys) == (f"medtrans info: error: {tmp_path / 'a.nii'}: cannot be read (Expected 2048 bytes "
                                 "- could the file be damaged?)")
