"""Bad DICOM input: every case raises an error from core/errors.py whose message names the file or folder."""

from __future__ import annotations

import errno
import os
import threading
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from napari_medtrans.core.errors import (
    DicomReadError,
    GeometryError,
    MultipleSeriesError,
    NoDicomError,
    NotAVolumeError,
    UnevenSpacingError,
)
from napari_medtrans.core.io import list_series, load
from napari_medtrans.core.io.dicom import read_dicom_series
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.core.volume import Volume


def small_volume(shape=(16, 12, 6), seed=0, spacing=(1.0, 1.0, 2.5)):
    rng = np.random.default_rng(seed)
    return Volume((rng.random(shape) * 500).astype(np.float32), np.diag([*spacing, 1.0]), modality="T1")


@pytest.fixture
def series(tmp_path):
    folder = tmp_path / "series"
    files = write_dicom_series(small_volume(), folder, series_description="T1 SE")
    return folder, files


def edit(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


def test_corrupt_file_in_series_names_it(series):
    folder, files = series
    data = bytearray(files[2].read_bytes())
    # Keep the preamble and "DICM" so it is recognisably DICOM, scramble the file meta and dataset.
    data[132:] = np.random.default_rng(0).integers(0, 256, len(data) - 132, dtype=np.uint8).tobytes()
    files[2].write_bytes(bytes(data))
    with pytest.raises(DicomReadError) as err:
        load(folder)
    assert str(files[2]) in str(err.value)


def test_truncated_pixel_data_names_file(series):
    folder, files = series
    data = files[4].read_bytes()
    files[4].write_bytes(data[: len(data) - 100])
    with pytest.raises(DicomReadError, match="truncated") as err:
        load(folder)
    assert str(files[4]) in str(err.value)
    assert err.value.path == str(files[4])


def test_truncated_header_names_file(series):
    folder, files = series
    files[0].write_bytes(files[0].read_bytes()[:300])
    with pytest.raises(DicomReadError) as err:
        load(folder)
    assert str(files[0]) in str(err.value)


def test_undecodable_compressed_pixels_name_file(tmp_path):
    files = write_dicom_series(small_volume(), tmp_path / "rle", series_description="T1",
                               transfer_syntax=RLELossless)
    ds = pydicom.dcmread(files[1])
    data = bytearray(ds.PixelData)
    # Encapsulation: basic offset table item (8-byte header + its length), then the fragment item header
    # (8 bytes); the fragment starts with the RLE header whose first 4 bytes count the segments (2 here).
    start = 8 + int.from_bytes(data[4:8], "little") + 8
    assert int.from_bytes(data[start : start + 4], "little") == 2
    data[start : start + 4] = (7).to_bytes(4, "little")  # claims 7 segments with no offsets: undecodable
    ds.PixelData = bytes(data)
    ds.save_as(files[1])
    with pytest.raises(DicomReadError) as err:
        load(tmp_path / "rle")
    assert str(files[1]) in str(err.value)


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    (folder / "data.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(NoDicomError) as err:
        load(folder)
    assert str(folder) in str(err.value)
    assert "2 files checked" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoDicomError, match=str(empty)):
        list_series(empty)


def test_missing_path_and_non_dicom_file(tmp_path):
    with pytest.raises(NotAVolumeError, match="no such file"):
        load(tmp_path / "nothing_here")
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    with pytest.raises(NotAVolumeError) as err:
        load(txt)
    assert str(txt) in str(err.value)


def test_mixed_series_lists_both_and_series_uid_selects(tmp_path):
    folder = tmp_path / "mixed"
    a = write_dicom_series(small_volume(seed=1), folder, series_description="AX T1", series_number=1)
    b = write_dicom_series(small_volume(seed=2, shape=(16, 12, 4)), folder, series_description="AX T2",
                           series_number=2)
    uid_a, uid_b = (pydicom.dcmread(f[0]).SeriesInstanceUID for f in (a, b))
    with pytest.raises(MultipleSeriesError) as err:
        load(folder)
    msg = str(err.value)
    assert str(folder) in msg and uid_a in msg and uid_b in msg and "AX T1" in msg and "AX T2" in msg
    assert [s.series_instance_uid for s in err.value.series] == [uid_a, uid_b]
    assert load(folder, series_uid=uid_b).shape == (16, 12, 4)
    assert load(folder, series_uid=uid_a).shape == (16, 12, 6)
    with pytest.raises(DicomReadError, match="no series with SeriesInstanceUID 1.2.3") as err:
        load(folder, series_uid="1.2.3")
    assert str(folder) in str(err.value)


@pytest.mark.parametrize(
    "keyword, tag",
    [
        ("ImagePositionPatient", "(0020,0032)"),
        ("ImageOrientationPatient", "(0020,0037)"),
        ("PixelSpacing", "(0028,0030)"),
    ],
)
def test_missing_geometry_tag_names_tag_and_file(series, keyword, tag):
    folder, files = series
    edit(files[3], **{keyword: None})
    with pytest.raises(GeometryError) as err:
        load(folder)
    msg = str(err.value)
    assert keyword in msg and tag in msg and str(files[3]) in msg


def test_missing_geometry_in_enhanced_frame(tmp_path):
    (path,) = write_dicom_series(small_volume(), tmp_path / "e", series_description="T1", enhanced=True)
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence
    ds.save_as(path)
    with pytest.raises(GeometryError, match="frame 3") as err:
        load(tmp_path / "e")
    assert str(path) in str(err.value) and "ImagePositionPatient" in str(err.value)


def test_uneven_spacing_reports_gaps_and_allow_uneven_reads(series):
    folder, files = series
    files[3].unlink()  # a missing slice: gaps 2.5, 2.5, 5.0, 2.5
    with pytest.raises(UnevenSpacingError) as err:
        load(folder)
    assert str(folder) in str(err.value)
    assert "2.500 to 5.000 mm" in str(err.value)
    assert err.value.spacings == pytest.approx([2.5, 2.5, 5.0, 2.5])
    vol = load(folder, allow_uneven=True)
    assert vol.shape == (16, 12, 5)
    assert vol.spacing[2] == pytest.approx(12.5 / 4)  # mean spacing, no resampling
    assert vol.provenance["slice_positions_mm"] == pytest.approx([0, 2.5, 5.0, 10.0, 12.5])


def test_small_position_jitter_within_tolerance_is_even(series):
    folder, files = series
    ds = pydicom.dcmread(files[2])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    edit(files[2], ImagePositionPatient=[ipp[0], ipp[1], ipp[2] + 0.005])
    assert load(folder).shape == (16, 12, 6)


def test_duplicate_positions_are_refused(series, tmp_path):
    folder, files = series
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.EchoNumbers = 2
    ds.save_as(folder / "second_echo.dcm")
    with pytest.raises(DicomReadError, match="share a position") as err:
        load(folder)
    assert str(folder) in str(err.value)
    assert "EchoNumbers" in str(err.value)


def test_inconsistent_slice_size_names_file(series):
    folder, files = series
    ds = pydicom.dcmread(files[1])
    ds.Rows = 6
    ds.PixelData = ds.PixelData[: 6 * 16 * 2]
    ds.save_as(files[1])
    with pytest.raises(DicomReadError, match="slice size") as err:
        load(folder)
    assert str(files[1]) in str(err.value)


def test_inconsistent_orientation_names_file(series):
    folder, files = series
    edit(files[4], ImageOrientationPatient=[1, 0, 0, 0, 0.8, 0.6])
    with pytest.raises(DicomReadError, match="ImageOrientationPatient") as err:
        load(folder)
    assert str(files[4]) in str(err.value)


def test_single_broken_file_given_directly(series):
    folder, files = series
    files[2].write_bytes(files[2].read_bytes()[:250])
    with pytest.raises(DicomReadError) as err:
        read_dicom_series(files[2])
    assert str(files[2]) in str(err.value)


# -- issue 18: numbers that make no volume, unreadable files and folders, sizes past any volume ---------------


def _patch_ds_text(path, old: bytes, new: bytes):
    """Replace the one occurrence of ``old`` in the file (to write what pydicom refuses to, e.g. "abc" in a DS)."""
    raw = path.read_bytes()
    assert raw.count(old) == 1 and len(old) == len(new)
    path.write_bytes(raw.replace(old, new))


@pytest.mark.parametrize(
    "keyword, value, tag",
    [
        ("RescaleSlope", "NaN", "(0028,1053)"),
        ("RescaleSlope", "inf", "(0028,1053)"),
        ("RescaleSlope", "-inf", "(0028,1053)"),
        ("RescaleIntercept", "NaN", "(0028,1052)"),
        ("RescaleSlope", "1e39", "(0028,1053)"),  # finite as text, infinite as float32
    ],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom, while the test writes the bad value
def test_non_finite_rescale_is_refused_naming_file_and_tag(series, keyword, value, tag):
    folder, files = series
    edit(files[2], **{keyword: value})
    with pytest.raises(DicomReadError) as err:
        load(folder)
    msg = str(err.value)
    assert err.value.path == str(files[2])
    assert keyword in msg and tag in msg and value in msg


def test_rescale_slope_that_is_not_a_number_is_refused(series):
    folder, files = series
    edit(files[1], RescaleSlope="7.25")
    _patch_ds_text(files[1], b"7.25", b"abc ")
    with pytest.raises(DicomReadError, match=r"RescaleSlope \(0028,1053\) is not a number \('abc'\)") as err:
        load(folder)
    assert err.value.path == str(files[1])


def test_rescale_past_float32_range_is_refused(series):
    folder, files = series
    edit(files[3], RescaleSlope="1e38")  # finite, but 500 * 1e38 is not a float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning on the way
        with pytest.raises(DicomReadError, match="float32 range") as err:
            load(folder)
    assert err.value.path == str(files[3])


def test_large_but_finite_rescale_still_reads(series):
    folder, files = series
    edit(files[0], RescaleSlope="1e30", RescaleIntercept="-5")
    vol = load(folder)
    assert np.all(np.isfinite(vol.data))
    assert vol.data[:, :, 0].max() > 1e30


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_enhanced_frame_with_nan_slope_names_the_frame(tmp_path):
    (path,) = write_dicom_series(small_volume(), tmp_path / "e", series_description="T1", enhanced=True)
    ds = pydicom.dcmread(path)
    item = ds.PerFrameFunctionalGroupsSequence[3]
    pvt = pydicom.Dataset()
    pvt.RescaleSlope = "NaN"
    pvt.RescaleIntercept = "0"
    pvt.RescaleType = "US"
    item.PixelValueTransformationSequence = pydicom.Sequence([pvt])
    ds.save_as(path)
    with pytest.raises(DicomReadError, match="frame 4") as err:
        load(tmp_path / "e")
    assert "RescaleSlope" in str(err.value) and err.value.path == str(path)


def test_zero_pixel_spacing_is_a_geometry_error(series):
    folder, files = series
    for f in files:
        edit(f, PixelSpacing=[0, 0])
    with pytest.raises(GeometryError, match=r"PixelSpacing \(0028,0030\) should hold 2 positive numbers") as err:
        load(folder)
    assert err.value.path == str(files[0])


def test_number_of_frames_below_one_is_refused(series):
    folder, files = series
    edit(files[0], NumberOfFrames=-3)
    with pytest.raises(DicomReadError, match=r"NumberOfFrames \(0028,0008\)") as err:
        load(folder)
    assert err.value.path == str(files[0])


def test_headers_claiming_a_huge_volume_are_refused_before_allocating(series, monkeypatch):
    folder, files = series
    for f in files:
        edit(f, Rows=65535, Columns=65535)  # 6 x 65535 x 65535 float32 would be 96 GiB
    real_empty = np.empty

    def guarded_empty(shape, *args, **kwargs):
        assert int(np.prod(shape, dtype=np.int64)) < 1 << 31, "allocated before checking the size"
        return real_empty(shape, *args, **kwargs)

    monkeypatch.setattr(np, "empty", guarded_empty)
    with pytest.raises(DicomReadError, match="65535 x 65535") as err:
        load(folder)
    assert str(folder) in str(err.value) and "voxels" in str(err.value)


def _refuse_listing(monkeypatch, folder):
    """Make os.scandir (which os.walk uses) fail on ``folder`` as it does without read permission."""
    real = os.scandir

    def scandir(path="."):
        if os.path.normpath(os.fspath(path)) == os.path.normpath(os.fspath(folder)):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_folder_says_it_cannot_be_read(series, monkeypatch):
    folder, _ = series
    _refuse_listing(monkeypatch, folder)
    for call in (load, list_series):
        with pytest.raises(DicomReadError) as err:
            call(folder)
        msg = str(err.value)
        assert "cannot be read" in msg and "permission denied" in msg and "0 files checked" not in msg
        assert err.value.path == str(folder)
        assert not isinstance(err.value, NoDicomError)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_folder_without_permission(series):
    folder, _ = series
    folder.chmod(0)
    try:
        with pytest.raises(DicomReadError, match="permission denied"):
            load(folder)
    finally:
        folder.chmod(0o755)


def test_unreadable_subfolder_is_reported_not_skipped(series, monkeypatch):
    folder, files = series
    sub = folder / "more"
    sub.mkdir()
    _refuse_listing(monkeypatch, sub)
    with pytest.raises(DicomReadError, match="folder cannot be read") as err:
        load(folder)
    assert err.value.path == str(sub)
    found = list_series(folder)
    assert len(found) == 1 and found[0].n_files == len(files)
    assert [p for p, _ in found.unreadable] == [str(sub)]


def test_unreadable_file_says_permission_denied(series, monkeypatch):
    folder, files = series
    real = os.open

    def os_open(path, flags, *args, **kwargs):
        if os.fspath(path) == str(files[2]):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    with pytest.raises(DicomReadError, match=r"cannot be read \(permission denied\)") as err:
        load(folder)
    assert err.value.path == str(files[2])


def test_symlink_loop_in_folder_is_named(series):
    folder, _ = series
    (folder / "loop.dcm").symlink_to(folder / "loop.dcm")
    with pytest.raises(DicomReadError, match="loop of symbolic links") as err:
        load(folder)
    assert err.value.path == str(folder / "loop.dcm")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_named_pipe_in_folder_is_skipped_without_waiting(series):
    folder, files = series
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("vol", load(folder)), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # release the reader that waits for a writer, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("reading the folder waited on a named pipe")
    assert result["vol"].shape == (16, 12, 6)


def test_one_non_dicom_file_is_named_without_scanning_its_folder(series, tmp_path):
    folder, files = series
    note = folder / "notes.txt"
    note.write_text("not an image")
    files[0].write_bytes(files[0].read_bytes()[:300])  # a broken neighbour must not be what the error names
    for call in (load, list_series):
        with pytest.raises(NotAVolumeError, match="is neither a NIfTI file nor a DICOM image") as err:
            call(note)
        assert err.value.path == str(note)


def test_corrupt_file_gives_no_pydicom_warning(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "IM1.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 500)  # pydicom warns while failing on it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DicomReadError):
            load(folder)
    assert [str(w.message) for w in caught] == []


def test_folder_named_like_nifti_says_it_is_a_folder(tmp_path):
    folder = tmp_path / "t1.nii.gz"
    folder.mkdir()
    with pytest.raises(NoDicomError, match="is a folder, not a NIfTI file") as err:
        load(folder)
    assert err.value.path == str(folder)
