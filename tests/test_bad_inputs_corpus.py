"""A corpus of bad inputs (issue 18) through `medtrans info/convert/translate/export` and `core.io.load`.

Every bad input is made here, in ``tmp_path``: broken NIfTI files, broken DICOM series, odd folders and links,
/proc paths, and output locations that cannot be written. Each one must give

* through the CLI (run in-process with :func:`napari_medtrans.cli.main`): exit status 2 and exactly one line on
  stderr that names the file (or folder) and the problem, no traceback, no "unexpected error" from the CLI's
  last-resort handler, and no output left behind;
* through :func:`napari_medtrans.core.io.load`: a :class:`MedtransError` whose one-line message names the file.

Every run is tallied; ``test_figures`` (last in this module) prints "bad inputs tried / handled" (and how many
only the CLI's last-resort handler caught) and checks that everything not marked as waiting for another module's
fix was handled.
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_medtrans import cli
from napari_medtrans.cli import main
from napari_medtrans.core.errors import MedtransError
from napari_medtrans.core.io import load, write_nifti
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.core.volume import Volume

# -- making bad inputs ---------------------------------------------------------------------------------------

SHAPE = (16, 12, 6)


def _volume(shape=SHAPE, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume((rng.random(shape) * 500 + 10).astype(np.float32), np.diag([1.0, 1.0, 2.5, 1.0]), modality="T1")


def _good_nifti(tmp: Path, name="good_T1.nii.gz") -> Path:
    path = tmp / name
    nib.save(nib.Nifti1Image(_volume().data, np.diag([1.0, 1.0, 2.5, 1.0])), str(path))
    return path


def _synthetic_nifti(tmp: Path, name="t2_synthetic.nii.gz") -> Path:
    """A good volume that `medtrans export` takes: marked synthetic by the tool's own writer."""
    vol = _volume()
    vol = Volume(vol.data, vol.affine, modality="T2", synthetic=True, provenance={"method": "unet"})
    return write_nifti(vol, tmp / name)


def _nifti(tmp: Path, name: str, data, affine=None, **header) -> Path:
    path = tmp / name
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return path


def _patched(tmp: Path, name: str, offset: int, fmt: str, values) -> Path:
    """An uncompressed NIfTI-1 file of shape (4, 4, 4) with raw header bytes overwritten (no validation)."""
    src = _nifti(tmp, "_src.nii", np.ones((4, 4, 4), np.float32))
    raw = bytearray(src.read_bytes())
    raw[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    src.unlink()
    path = tmp / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(raw)))
    else:
        path.write_bytes(bytes(raw))
    return path


def _dims(tmp, name, dims):
    return _patched(tmp, name, 40, "<8h", list(dims) + [1] * (8 - len(dims)))


def _series(tmp: Path, name="series", **kw) -> tuple[Path, list[Path]]:
    folder = tmp / name
    files = write_dicom_series(_volume(**kw), folder, series_description="AX T1 SE")
    return folder, files


def _edit(path: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


def _dicom_edited(tmp, slot=2, **changes):
    """The series folder and its file ``slot`` after ``changes``."""
    folder, files = _series(tmp)
    _edit(files[slot], **changes)
    return folder, files[slot]


# Each maker returns (path to give, text the message must contain); the text is the path unless said otherwise.


def nii_empty(tmp):
    (tmp / "empty.nii").write_bytes(b"")
    return tmp / "empty.nii"


def niigz_empty(tmp):
    (tmp / "empty.nii.gz").write_bytes(b"")
    return tmp / "empty.nii.gz"


def nii_garbage(tmp):
    (tmp / "garbage.nii").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    return tmp / "garbage.nii"


def niigz_garbage(tmp):
    (tmp / "garbage.nii.gz").write_bytes(np.random.default_rng(2).integers(0, 256, 4096, np.uint8).tobytes())
    return tmp / "garbage.nii.gz"


def niigz_gzipped_garbage(tmp):
    raw = np.random.default_rng(3).integers(0, 256, 4096, np.uint8).tobytes()
    (tmp / "gzgarbage.nii.gz").write_bytes(gzip.compress(raw))
    return tmp / "gzgarbage.nii.gz"


def nii_text(tmp):
    (tmp / "notes.nii").write_text("this is not an image\n" * 40)
    return tmp / "notes.nii"


def nii_truncated_header(tmp):
    good = _nifti(tmp, "_t.nii", np.ones((8, 8, 8), np.float32))
    (tmp / "cut_header.nii").write_bytes(good.read_bytes()[:200])
    good.unlink()
    return tmp / "cut_header.nii"


def nii_truncated_data(tmp):
    good = _nifti(tmp, "_t.nii", np.ones((8, 8, 8), np.float32))
    (tmp / "cut_data.nii").write_bytes(good.read_bytes()[:1000])
    good.unlink()
    return tmp / "cut_data.nii"


def niigz_truncated(tmp):
    good = _nifti(tmp, "_t.nii.gz", np.random.default_rng(4).random((16, 16, 16)).astype(np.float32))
    raw = good.read_bytes()
    (tmp / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    good.unlink()
    return tmp / "cut.nii.gz"


def nii_header_only(tmp):
    good = _nifti(tmp, "_t.nii", np.ones((8, 8, 8), np.float32))
    (tmp / "header_only.nii").write_bytes(good.read_bytes()[:352])
    good.unlink()
    return tmp / "header_only.nii"


def nii_bad_magic(tmp):
    return _patched(tmp, "bad_magic.nii", 344, "<4s", [b"xyz\x00"])


def nii_ndim_out_of_range(tmp):
    return _dims(tmp, "ndim9.nii", [9, 4, 4, 4])


def _sform(tmp, name, srows) -> Path:
    """A (4, 4, 4) NIfTI whose affine is the sform ``srows`` (3 rows of 4), written byte by byte: nibabel will not
    build an image from an affine it cannot decompose."""
    path = _patched(tmp, name, 280, "<12f", [float(v) for row in srows for v in row])
    raw = bytearray(path.read_bytes())
    raw[252:256] = struct.pack("<2h", 0, 1)  # qform_code 0, sform_code 1: the sform is the affine
    path.write_bytes(bytes(raw))
    return path


def nii_affine_nan(tmp):
    return _sform(tmp, "nan_affine.nii", [[np.nan, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])


def nii_affine_inf(tmp):
    return _sform(tmp, "inf_affine.nii", [[1, 0, 0, 0], [0, 1, 0, np.inf], [0, 0, 1, 0]])


def nii_affine_zero(tmp):
    return _sform(tmp, "zero_affine.nii", [[0] * 4] * 3)


def nii_affine_singular(tmp):
    return _sform(tmp, "singular_affine.nii", [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])  # k runs along i


def nii_4d(tmp):
    return _nifti(tmp, "four_d.nii.gz", np.ones((4, 4, 4, 3), np.float32))


def nii_5d(tmp):
    return _nifti(tmp, "five_d.nii.gz", np.ones((4, 4, 4, 1, 2), np.float32))


def nii_2d(tmp):
    return _nifti(tmp, "two_d.nii.gz", np.ones((8, 8), np.float32))


def nii_1d(tmp):
    return _nifti(tmp, "one_d.nii.gz", np.ones((8,), np.float32))


def nii_zero_length(tmp):
    return _nifti(tmp, "zero_len.nii.gz", np.ones((4, 0, 4), np.float32))


def nii_zero_dim_header(tmp):
    return _dims(tmp, "zero_dim.nii", [3, 4, 0, 4])


def nii_negative_dim(tmp):
    return _dims(tmp, "neg_dim.nii", [3, 4, -4, 4])


def nii_huge_dims(tmp):
    return _dims(tmp, "huge.nii", [3, 32767, 32767, 32767])


def niigz_huge_dims(tmp):
    return _dims(tmp, "huge.nii.gz", [3, 32767, 32767, 32767])


def nii_huge_4d_dims(tmp):
    return _dims(tmp, "huge4d.nii.gz", [4, 30000, 30000, 30000, 30000])


def nii_large_claim_small_file(tmp):
    return _dims(tmp, "claims_1600M.nii", [3, 4000, 4000, 100])


def nii_nan_voxels(tmp):
    data = np.ones((4, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    return _nifti(tmp, "nan_vox.nii.gz", data)


def nii_inf_voxels(tmp):
    data = np.ones((4, 4, 4), np.float32)
    data[0, 0, 0] = -np.inf
    return _nifti(tmp, "inf_vox.nii.gz", data)


def nii_all_nan(tmp):
    return _nifti(tmp, "all_nan.nii.gz", np.full((4, 4, 4), np.nan, np.float32))


def nii_scl_slope_inf(tmp):
    src = _nifti(tmp, "_s.nii", np.full((4, 4, 4), 2, np.int16))
    raw = bytearray(src.read_bytes())
    raw[112:120] = struct.pack("<2f", 3e38, 0.0)  # scl_slope, scl_inter: 2 * 3e38 overflows float32
    src.unlink()
    (tmp / "slope_overflow.nii").write_bytes(bytes(raw))
    return tmp / "slope_overflow.nii"


def nii_complex(tmp):
    return _nifti(tmp, "complex.nii.gz", np.ones((4, 4, 4), np.complex64))


def nii_rgb(tmp):
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return _nifti(tmp, "rgb.nii.gz", rgb)


def nii_directory(tmp):
    (tmp / "folder.nii.gz").mkdir()
    return tmp / "folder.nii.gz"


def nii_symlink_loop(tmp):
    link = tmp / "loop.nii.gz"
    link.symlink_to(link)
    return link


def nii_dangling_symlink(tmp):
    link = tmp / "dangling.nii.gz"
    link.symlink_to(tmp / "gone.nii.gz")
    return link


def nii_missing(tmp):
    return tmp / "missing.nii.gz"


def nii_fifo(tmp):
    os.mkfifo(tmp / "fifo.nii")
    return tmp / "fifo.nii"


def dcm_garbage_after_preamble(tmp):
    folder, files = _series(tmp)
    raw = bytearray(files[2].read_bytes())
    raw[132:] = np.random.default_rng(5).integers(0, 256, len(raw) - 132, np.uint8).tobytes()
    files[2].write_bytes(bytes(raw))
    return folder, files[2]


def dcm_only_file_garbage(tmp):
    folder = tmp / "one"
    folder.mkdir()
    (folder / "IM1.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 500)
    return folder, folder / "IM1.dcm"


def dcm_garbage_file_given(tmp):
    folder, file = dcm_only_file_garbage(tmp)
    return file


def dcm_truncated_header(tmp):
    folder, files = _series(tmp)
    files[0].write_bytes(files[0].read_bytes()[:300])
    return folder, files[0]


def dcm_truncated_pixels(tmp):
    folder, files = _series(tmp)
    files[4].write_bytes(files[4].read_bytes()[:-100])
    return folder, files[4]


def dcm_missing_pixels(tmp):
    return _dicom_edited(tmp, PixelData=None)


def dcm_nan_slope(tmp):
    return _dicom_edited(tmp, RescaleSlope="NaN")


def dcm_inf_slope(tmp):
    return _dicom_edited(tmp, RescaleSlope="inf")


def dcm_nan_intercept(tmp):
    return _dicom_edited(tmp, slot=3, RescaleIntercept="NaN")


def dcm_text_slope(tmp):
    folder, files = _series(tmp)
    _edit(files[1], RescaleSlope="7.25")
    raw = files[1].read_bytes()
    assert raw.count(b"7.25") == 1
    files[1].write_bytes(raw.replace(b"7.25", b"abc "))  # pydicom will not write a non-number into a DS
    return folder, files[1]


def dcm_overflowing_slope(tmp):
    return _dicom_edited(tmp, slot=1, RescaleSlope="1e38")


def dcm_zero_rows(tmp):
    folder, files = _series(tmp)
    for f in files:
        _edit(f, Rows=0, PixelData=b"")
    return folder, files[0].parent


def dcm_zero_columns_one_file(tmp):
    return _dicom_edited(tmp, slot=1, Columns=0)


def dcm_huge_rows_columns(tmp):
    folder, files = _series(tmp)
    for f in files:
        _edit(f, Rows=65535, Columns=65535)
    return folder


def dcm_huge_frames(tmp):
    folder, files = _series(tmp)
    _edit(files[0], NumberOfFrames=2**31 - 1)
    return folder, files[0]


def dcm_negative_frames(tmp):
    folder, files = _series(tmp)
    _edit(files[0], NumberOfFrames=-3)
    return folder, files[0]


def dcm_rgb(tmp):
    folder, files = _series(tmp)
    for f in files:
        _edit(f, SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0)
    return folder, files[0]


def dcm_bits_allocated_odd(tmp):
    folder, files = _series(tmp)
    for f in files:
        _edit(f, BitsAllocated=12, BitsStored=12, HighBit=11)
    return folder


def dcm_mixed_orientation(tmp):
    folder, files = _series(tmp)
    _edit(files[4], ImageOrientationPatient=[1, 0, 0, 0, 0.8, 0.6])
    return folder, files[4]


def dcm_zero_orientation(tmp):
    folder, files = _series(tmp)
    for f in files:
        _edit(f, ImageOrientationPatient=[0, 0, 0, 0, 0, 0])
    return folder


def dcm_duplicate_positions(tmp):
    folder, files = _series(tmp)
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.EchoNumbers = 2
    ds.save_as(folder / "second_echo.dcm")
    return folder


def dcm_inconsistent_sizes(tmp):
    folder, files = _series(tmp)
    ds = pydicom.dcmread(files[1])
    ds.Rows = 6
    ds.PixelData = ds.PixelData[: 6 * 16 * 2]
    ds.save_as(files[1])
    return folder, files[1]


def dcm_missing_position(tmp):
    return _dicom_edited(tmp, slot=3, ImagePositionPatient=None)


def dcm_nan_pixel_spacing(tmp):
    return _dicom_edited(tmp, slot=0, PixelSpacing=["NaN", "1"])


def dcm_zero_pixel_spacing(tmp):
    folder, files = _series(tmp)
    for f in files:
        _edit(f, PixelSpacing=[0, 0])
    return folder


def dcm_uneven(tmp):
    folder, files = _series(tmp)
    files[3].unlink()
    return folder


def dcm_symlink_loop_in_folder(tmp):
    folder, files = _series(tmp)
    (folder / "loop.dcm").symlink_to(folder / "loop.dcm")
    return folder, folder / "loop.dcm"


def input_under_a_file(tmp):
    folder = tmp / "study"
    folder.mkdir()
    (folder / "IM1.dcm").write_text("a file")
    return folder / "IM1.dcm" / "sub"


def folder_empty(tmp):
    (tmp / "empty_dir").mkdir()
    return tmp / "empty_dir"


def folder_of_text(tmp):
    folder = tmp / "texts"
    folder.mkdir()
    for i in range(3):
        (folder / f"note{i}.txt").write_text("not DICOM\n")
    return folder


def folder_only_hidden(tmp):
    folder = tmp / "hidden"
    folder.mkdir()
    (folder / ".DS_Store").write_bytes(b"\x00" * 64)
    return folder


def file_text_not_image(tmp):
    (tmp / "readme.txt").write_text("hello")
    return tmp / "readme.txt"


def file_empty_dcm(tmp):
    (tmp / "empty.dcm").write_bytes(b"")
    return tmp / "empty.dcm"


def proc_status(tmp):
    return Path("/proc/self/status")


def proc_folder(tmp):
    return Path("/proc/self/attr")


def proc_nifti_name(tmp):
    return Path("/proc/self/nothere.nii.gz")


INPUTS = {
    "nii-empty": nii_empty,
    "niigz-empty": niigz_empty,
    "nii-garbage": nii_garbage,
    "niigz-garbage": niigz_garbage,
    "niigz-gzipped-garbage": niigz_gzipped_garbage,
    "nii-text": nii_text,
    "nii-truncated-header": nii_truncated_header,
    "nii-truncated-data": nii_truncated_data,
    "niigz-truncated": niigz_truncated,
    "nii-header-only": nii_header_only,
    "nii-bad-magic": nii_bad_magic,
    "nii-ndim-9": nii_ndim_out_of_range,
    "nii-affine-nan": nii_affine_nan,
    "nii-affine-inf": nii_affine_inf,
    "nii-affine-zero": nii_affine_zero,
    "nii-affine-singular": nii_affine_singular,
    "nii-4d": nii_4d,
    "nii-5d": nii_5d,
    "nii-2d": nii_2d,
    "nii-1d": nii_1d,
    "nii-zero-length": nii_zero_length,
    "nii-zero-dim-header": nii_zero_dim_header,
    "nii-negative-dim": nii_negative_dim,
    "nii-huge-dims": nii_huge_dims,
    "niigz-huge-dims": niigz_huge_dims,
    "nii-huge-4d-dims": nii_huge_4d_dims,
    "nii-claims-more-than-file": nii_large_claim_small_file,
    "nii-nan-voxels": nii_nan_voxels,
    "nii-inf-voxels": nii_inf_voxels,
    "nii-all-nan": nii_all_nan,
    "nii-scl-slope-overflow": nii_scl_slope_inf,
    "nii-complex": nii_complex,
    "nii-rgb": nii_rgb,
    "nii-is-a-folder": nii_directory,
    "nii-symlink-loop": nii_symlink_loop,
    "nii-dangling-symlink": nii_dangling_symlink,
    "nii-missing": nii_missing,
    "nii-fifo": nii_fifo,
    "dcm-garbage-after-preamble": dcm_garbage_after_preamble,
    "dcm-only-file-garbage": dcm_only_file_garbage,
    "dcm-garbage-file-given": dcm_garbage_file_given,
    "dcm-truncated-header": dcm_truncated_header,
    "dcm-truncated-pixels": dcm_truncated_pixels,
    "dcm-missing-pixels": dcm_missing_pixels,
    "dcm-nan-slope": dcm_nan_slope,
    "dcm-inf-slope": dcm_inf_slope,
    "dcm-nan-intercept": dcm_nan_intercept,
    "dcm-text-slope": dcm_text_slope,
    "dcm-overflowing-slope": dcm_overflowing_slope,
    "dcm-zero-rows": dcm_zero_rows,
    "dcm-zero-columns": dcm_zero_columns_one_file,
    "dcm-huge-rows-columns": dcm_huge_rows_columns,
    "dcm-huge-frames": dcm_huge_frames,
    "dcm-negative-frames": dcm_negative_frames,
    "dcm-rgb": dcm_rgb,
    "dcm-bits-allocated-12": dcm_bits_allocated_odd,
    "dcm-mixed-orientation": dcm_mixed_orientation,
    "dcm-zero-orientation": dcm_zero_orientation,
    "dcm-duplicate-positions": dcm_duplicate_positions,
    "dcm-inconsistent-sizes": dcm_inconsistent_sizes,
    "dcm-missing-position": dcm_missing_position,
    "dcm-nan-pixel-spacing": dcm_nan_pixel_spacing,
    "dcm-zero-pixel-spacing": dcm_zero_pixel_spacing,
    "dcm-uneven-spacing": dcm_uneven,
    "dcm-symlink-loop-in-folder": dcm_symlink_loop_in_folder,
    "input-under-a-file": input_under_a_file,
    "folder-empty": folder_empty,
    "folder-of-text": folder_of_text,
    "folder-only-hidden-files": folder_only_hidden,
    "file-text": file_text_not_image,
    "file-empty-dcm": file_empty_dcm,
    "proc-status-file": proc_status,
    "proc-folder": proc_folder,
    "proc-missing-nifti": proc_nifti_name,
}


def _make(maker, tmp: Path) -> tuple[Path, str]:
    got = maker(tmp)
    path, named = got if isinstance(got, tuple) else (got, got)
    return Path(path), str(named)


# Output locations that cannot be written; the input is good. Each returns (argv, path named, outputs that must
# not exist afterwards).


def _file_as_folder(tmp):
    (tmp / "plain_file").write_text("a file, not a folder")
    return tmp / "plain_file"


def out_convert_under_file(tmp):
    f = _file_as_folder(tmp)
    out = f / "t1.nii.gz"
    return ["convert", str(_good_nifti(tmp)), str(out)], str(f), [out]


def out_convert_deep_under_file(tmp):
    f = _file_as_folder(tmp)
    out = f / "a" / "b" / "t1.nii.gz"
    return ["convert", str(_good_nifti(tmp)), str(out)], str(f), [out, f / "a"]


def out_convert_is_folder(tmp):
    out = tmp / "taken.nii.gz"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    return ["convert", str(_good_nifti(tmp)), str(out)], str(out), [out / "keep.txt.nii.gz"]


def out_convert_proc(tmp):
    out = Path("/proc/medtrans_out.nii.gz")
    return ["convert", str(_good_nifti(tmp)), str(out)], "/proc", [out]


def out_convert_proc_file_parent(tmp):
    out = Path("/proc/self/status/out.nii.gz")
    return ["convert", str(_good_nifti(tmp)), str(out)], "/proc/self/status", [out]


def out_convert_name_too_long(tmp):
    out = tmp / ("x" * 300 + ".nii.gz")
    return ["convert", str(_good_nifti(tmp)), str(out)], "x" * 300, [out]


def out_convert_dicom_under_file(tmp):
    f = _file_as_folder(tmp)
    folder, _ = _series(tmp)
    out = f / "t1.nii"
    return ["convert", str(folder), str(out)], str(f), [out]


def out_translate_under_file(tmp):
    f = _file_as_folder(tmp)
    out = f / "t2.nii.gz"
    return ["translate", str(_good_nifti(tmp)), "--model", "demo", "--device", "cpu", "--out", str(out)], str(f), [out]


def out_translate_proc(tmp):
    out = Path("/proc/medtrans_t2.nii.gz")
    return ["translate", str(_good_nifti(tmp)), "--model", "demo", "--device", "cpu", "--out", str(out)], "/proc", [
        out]


def out_translate_dicom_under_file(tmp):
    f = _file_as_folder(tmp)
    out = f / "t2_dicom"
    argv = ["translate", str(_good_nifti(tmp)), "--model", "demo", "--device", "cpu", "--format", "dicom",
            "--out", str(out)]
    return argv, str(f), [out]


def out_export_under_file(tmp):
    f = _file_as_folder(tmp)
    out = f / "dicom_out"
    return ["export", str(_synthetic_nifti(tmp)), str(out)], str(f), [out]


def out_export_proc(tmp):
    out = Path("/proc/medtrans_dicom_out")
    return ["export", str(_synthetic_nifti(tmp)), str(out)], "/proc", [out]


def out_export_is_file(tmp):
    f = _file_as_folder(tmp)
    return ["export", str(_synthetic_nifti(tmp)), str(f)], str(f), []


OUTPUTS = {
    "convert-out-under-file": out_convert_under_file,
    "convert-out-deep-under-file": out_convert_deep_under_file,
    "convert-out-is-folder": out_convert_is_folder,
    "convert-out-in-proc": out_convert_proc,
    "convert-out-under-proc-file": out_convert_proc_file_parent,
    "convert-out-name-too-long": out_convert_name_too_long,
    "convert-dicom-out-under-file": out_convert_dicom_under_file,
    "translate-out-under-file": out_translate_under_file,
    "translate-out-in-proc": out_translate_proc,
    "translate-dicom-out-under-file": out_translate_dicom_under_file,
    "export-out-under-file": out_export_under_file,
    "export-out-in-proc": out_export_proc,
    "export-out-is-file": out_export_is_file,
}

# -- cases waiting for a fix in a module this test's author does not own --------------------------------------

#: (input or output case, command) -> why it still fails. Strict xfail: a fix elsewhere turns it into an XPASS,
#: and the entry must then be removed.
WAITING: dict[tuple[str, str], str] = {}

COMMANDS = ("load", "info", "convert", "translate", "export")

#: Bad inputs that are not bad for one command, with the reason; they are not run through it.
NOT_BAD_FOR = {
    ("dcm-uneven-spacing", "export"): "export takes an unevenly spaced source: it references slices by position",
}


def _commands_for(case: str) -> tuple[str, ...]:
    return tuple(cmd for cmd in COMMANDS if (case, cmd) not in NOT_BAD_FOR)


def _params():
    for case in INPUTS:
        for cmd in _commands_for(case):
            marks = ()
            if (case, cmd) in WAITING:
                marks = pytest.mark.xfail(strict=True, reason=WAITING[(case, cmd)])
            yield pytest.param(case, cmd, id=f"{case}-{cmd}", marks=marks)


# -- checks ---------------------------------------------------------------------------------------------------

#: case id -> "source" (a MedtransError from the code that met the problem), "last resort" (an OSError naming its
#: file, turned into one line by the CLI's last-resort handler), or "failed"; filled by every run of this module.
TALLY: dict[str, str] = {}

#: Warnings that a user would not see on stderr (Python hides them outside __main__ by default).
_HIDDEN = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _run_cli(argv, capsys) -> tuple[int, str, list[str], bool]:
    """(exit status, stderr, warnings a user would see, whether the last-resort handler was used)."""
    used = []
    real = cli.last_resort_message

    def recording(exc, args):
        used.append(exc)
        return real(exc, args)

    capsys.readouterr()
    cli.last_resort_message = recording
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc = main([str(a) for a in argv])
    finally:
        cli.last_resort_message = real
    err = capsys.readouterr().err
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, _HIDDEN)]
    return rc, err, shown, bool(used)


def _problems_cli(cmd, rc, err, shown, named, leftovers) -> list[str]:
    problems = []
    if rc != 2:
        problems.append(f"exit status {rc}, expected 2")
    lines = [ln for ln in err.splitlines() if ln.strip()] + shown
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr (warnings included), expected 1")
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    if lines and not lines[0].startswith(f"medtrans {cmd}: error: "):
        problems.append("the line does not start with 'medtrans CMD: error: '")
    if "unexpected error" in err or "not enough memory" in err:
        problems.append("only the CLI's last-resort handler caught it")
    if named not in err:
        problems.append(f"{named!r} is not named")
    for p in leftovers:
        if os.path.lexists(p):
            problems.append(f"output left behind: {p}")
    return problems


def _argv(cmd: str, path: Path, tmp: Path) -> tuple[list, list[Path]]:
    out = tmp / "out"
    if cmd == "info":
        return ["info", path], []
    if cmd == "convert":
        return ["convert", path, out / "converted.nii.gz"], [out]
    if cmd == "translate":
        return ["translate", path, "--model", "demo", "--device", "cpu", "--out", out / "t2.nii.gz"], [out]
    if cmd == "export":
        if str(path).lower().endswith((".nii", ".nii.gz")):
            return ["export", path, out / "dicom"], [out]
        # A DICOM input is what export reads as --source.
        return ["export", _synthetic_nifti(tmp), out / "dicom", "--source", path], [out]
    raise ValueError(cmd)


def _check_input_case(case: str, cmd: str, tmp: Path, capsys) -> tuple[list[str], bool]:
    """(problems, whether only the CLI's last-resort handler caught it)."""
    path, named = _make(INPUTS[case], tmp)
    if cmd == "load":
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                vol = load(path)
        except MedtransError as exc:
            msg = str(exc)
            problems = [] if named in msg else [f"{named!r} not named in {msg!r}"]
            if "\n" in msg:
                problems.append("the message has several lines")
            shown = [w for w in caught if not issubclass(w.category, _HIDDEN)]
            if shown:
                problems.append(f"warnings too: {[str(w.message) for w in shown]}")
            return problems, False
        except BaseException as exc:  # noqa: BLE001 - anything else is what this corpus is here to find
            return [f"{type(exc).__name__}: {exc}"[:300]], False
        return [f"loaded without an error: {vol!r}"], False
    argv, leftovers = _argv(cmd, path, tmp)
    return _check_cli(cmd, argv, named, leftovers, capsys)


def _check_cli(cmd, argv, named, leftovers, capsys) -> tuple[list[str], bool]:
    try:
        rc, err, shown, last_resort = _run_cli(argv, capsys)
    except BaseException as exc:  # noqa: BLE001
        return [f"main raised {type(exc).__name__}: {exc}"[:300]], False
    problems = _problems_cli(cmd, rc, err, shown, named, leftovers)
    return [f"{p} (stderr: {err.strip()[-300:]!r})" for p in problems[:1]] + problems[1:], last_resort


def _check_output_case(case: str, tmp: Path, capsys) -> tuple[list[str], bool]:
    argv, named, leftovers = OUTPUTS[case](tmp)
    return _check_cli(argv[0], argv, named, leftovers, capsys)


def _record(case_id: str, problems: list[str], last_resort: bool) -> None:
    TALLY[case_id] = "failed" if problems else ("last resort" if last_resort else "source")


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case, cmd", list(_params()))
def test_bad_input(case, cmd, tmp, capsys, one_torch_thread):
    problems, last_resort = _check_input_case(case, cmd, tmp, capsys)
    _record(f"{case}-{cmd}", problems, last_resort)
    assert not problems, f"{case} through {cmd}: " + "; ".join(problems)


def _output_params():
    for case in OUTPUTS:
        cmd = case.split("-")[0]
        marks = ()
        if (case, cmd) in WAITING:
            marks = pytest.mark.xfail(strict=True, reason=WAITING[(case, cmd)])
        yield pytest.param(case, id=case, marks=marks)


@pytest.mark.parametrize("case", list(_output_params()))
def test_bad_output(case, tmp, capsys, one_torch_thread):
    problems, last_resort = _check_output_case(case, tmp, capsys)
    _record(case, problems, last_resort)
    assert not problems, f"{case}: " + "; ".join(problems)


def test_figures(capsys):
    """Bad inputs tried / handled, over the runs of this module (run the whole module for the full figure)."""
    expected = {f"{c}-{m}" for c in INPUTS for m in _commands_for(c)} | set(OUTPUTS)
    if set(TALLY) != expected:
        pytest.skip(f"only {len(TALLY)} of {len(expected)} cases ran; run the whole module for the figures")
    outcomes = list(TALLY.values())
    at_source, last_resort = outcomes.count("source"), outcomes.count("last resort")
    handled = at_source + last_resort
    n_inputs = len(INPUTS) + len(OUTPUTS)
    line = (f"bad inputs: {n_inputs} made; runs through load/info/convert/translate/export: {len(TALLY)} tried, "
            f"{handled} handled ({at_source} by the code that met the problem, {last_resort} by the CLI's "
            f"last-resort handler naming the file), {len(TALLY) - handled} not handled "
            f"({len(WAITING)} listed as waiting for fixes in other modules)")
    with capsys.disabled():
        print("\n" + line)
    assert n_inputs >= 60
    assert len(TALLY) - handled == len(WAITING), line
