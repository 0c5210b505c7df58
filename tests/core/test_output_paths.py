"""`check_output_path`: an output that cannot be written is refused before any work, naming it and the reason."""

from __future__ import annotations

import os

import pytest

from napari_medtrans.core.errors import MedtransError, OutputPathError
from napari_medtrans.core.io.paths import check_output_path, missing_reason


def test_writable_places_pass_and_nothing_is_left(tmp_path):
    assert check_output_path(tmp_path / "t1.nii.gz") == tmp_path / "t1.nii.gz"
    assert check_output_path(tmp_path / "new" / "deeper" / "t1.nii.gz")  # parents can be made
    (tmp_path / "old.nii.gz").write_bytes(b"x")
    check_output_path(tmp_path / "old.nii.gz")  # an existing file may be replaced
    (tmp_path / "empty").mkdir()
    check_output_path(tmp_path / "empty", folder=True)
    check_output_path(tmp_path / "new_folder", folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "old.nii.gz"]  # no probe left, nothing made
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize("depth", [["t1.nii.gz"], ["a", "b", "t1.nii.gz"]])
def test_a_file_in_the_way_is_named(tmp_path, depth):
    blocker = tmp_path / "plain_file"
    blocker.write_text("a file")
    out = blocker.joinpath(*depth)
    with pytest.raises(OutputPathError) as err:
        check_output_path(out)
    assert isinstance(err.value, MedtransError)
    assert err.value.path == str(out)
    assert f"{blocker} is a file, not a folder" in str(err.value)


def test_wrong_kind_of_existing_output(tmp_path):
    (tmp_path / "taken.nii.gz").mkdir()
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_path(tmp_path / "taken.nii.gz")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="is a file; a folder is needed"):
        check_output_path(tmp_path / "file", folder=True)


def test_broken_link_as_output_or_parent(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_path(tmp_path / "dangling")
    with pytest.raises(OutputPathError, match="broken symbolic link"):
        check_output_path(tmp_path / "dangling" / "t1.nii.gz")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc here")
def test_proc_refuses_new_files():
    with pytest.raises(OutputPathError, match="refuses new files") as err:
        check_output_path("/proc/medtrans_out.nii.gz")
    assert "/proc" in str(err.value)
    with pytest.raises(OutputPathError, match="/proc/self/status is a file"):
        check_output_path("/proc/self/status/out.nii.gz")


def test_name_longer_than_the_file_system_allows(tmp_path):
    with pytest.raises(OutputPathError, match="bytes long"):
        check_output_path(tmp_path / ("x" * 300 + ".nii.gz"))
    with pytest.raises(OutputPathError, match="bytes long"):
        check_output_path(tmp_path / ("d" * 300) / "t1.nii.gz")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="permission denied"):
            check_output_path(locked / "t1.nii.gz")
    finally:
        locked.chmod(0o755)


def test_missing_reason_says_what_is_wrong(tmp_path):
    assert missing_reason(tmp_path / "nope") == "no such file or folder"
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert "loops" in missing_reason(tmp_path / "loop")
    (tmp_path / "f").write_text("x")
    assert f"{tmp_path / 'f'} is a file" in missing_reason(tmp_path / "f" / "sub")
