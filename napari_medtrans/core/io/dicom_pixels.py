"""Reading the pixels of one DICOM series into a float32 array, rescaled, in the order of its sorted frames.

* :func:`_read_pixels` reads each file once, straight into a preallocated array, applying RescaleSlope and
  RescaleIntercept (a rescale past the float32 range is refused); compressed files are decoded in threads.
* :func:`_native_pixels` takes uncompressed little-endian pixel data from the end of the file (or of its bytes
  kept from the header scan) without pydicom; :func:`_decoded_pixels` lets pydicom decode everything else.
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import DicomReadError
from ..volume import MAX_VOXELS
from .dicom_geometry import _FLOAT32_MAX, _Frame, _n_frames
from .dicom_header import _NATIVE, _fast, _transfer_syntax


#: Threads that decode compressed pixel data. Uncompressed slices are read in the calling thread: a seek, one
#: read and a scaled copy take ~0.3 ms, less than handing them to a pool costs (measured, 256x256 slices).
_PIXEL_WORKERS = min(8, os.cpu_count() or 2)


def _read_pixels(frames: list[_Frame], rows: int, cols: int, blobs: dict | None = None,
                 where: str | None = None) -> np.ndarray:
    """Decode every frame once, straight into a preallocated (k, row, column) float32 array; return its (i,j,k) view."""
    where = where if where is not None else frames[0].path
    n_voxels = len(frames) * rows * cols
    if n_voxels > MAX_VOXELS:
        raise DicomReadError(
            f"the headers claim {len(frames)} slices of {rows} x {cols} pixels ({n_voxels:,} voxels), more than "
            f"the {MAX_VOXELS:,} a volume may hold here; the headers are corrupt or the images are not one MR volume",
            where,
        )
    try:
        out = np.empty((len(frames), rows, cols), dtype=np.float32)
    except MemoryError as exc:
        raise DicomReadError(
            f"not enough memory for {len(frames)} slices of {rows} x {cols} pixels ({n_voxels * 4 / 2**30:.1f} GiB "
            "as float32)",
            where,
        ) from exc
    jobs: dict[str, list[tuple[int, _Frame]]] = {}
    for slot, fr in enumerate(frames):
        jobs.setdefault(fr.path, []).append((slot, fr))

    def work(path: str) -> None:
        items = jobs[path]
        ds = items[0][1].ds
        n_frames = _n_frames(path, ds)
        pixels = _native_pixels(path, ds, rows, cols, n_frames, (blobs or {}).get(path))
        if pixels is None:
            pixels = _decoded_pixels(path, ds, rows, cols, n_frames)
        for slot, fr in items:
            src = pixels[fr.index or 0]
            dst = out[slot]
            risky = _may_overflow(src.dtype, fr.slope, fr.intercept)
            with np.errstate(over="ignore", invalid="ignore"):
                if fr.slope != 1.0:
                    np.multiply(src, np.float32(fr.slope), out=dst, casting="unsafe")  # one pass: cast and scale
                else:
                    dst[...] = src
                if fr.intercept != 0.0:
                    dst += np.float32(fr.intercept)
            if risky and not np.all(np.isfinite(dst)):
                raise DicomReadError(
                    f"RescaleSlope (0028,1053) {fr.slope:g} and RescaleIntercept (0028,1052) {fr.intercept:g} "
                    f"scale the stored values{'' if fr.index is None else f' of frame {fr.index + 1}'} past the "
                    "float32 range (to infinity); the header is corrupt",
                    path,
                )

    paths = list(jobs)
    compressed = any(
        _transfer_syntax(items[0][1].ds) not in _NATIVE
        for items in jobs.values()
    )
    if compressed and len(paths) > 1 and _PIXEL_WORKERS > 1:
        with ThreadPoolExecutor(max_workers=min(_PIXEL_WORKERS, len(paths))) as pool:
            futures = [pool.submit(work, p) for p in paths]
            for fut in futures:
                fut.result()  # re-raises the first failure (a DicomReadError naming its file), in file order
    else:
        for path in paths:
            work(path)
    return out.transpose(2, 1, 0)


def _may_overflow(dtype: np.dtype, slope: float, intercept: float) -> bool:
    """True when ``stored * slope + intercept`` can leave the float32 range for some stored value of ``dtype``."""
    if dtype.kind not in "iub":
        return True  # float pixel data: any value is possible
    info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
    biggest = max(abs(int(info.min)), abs(int(info.max)))
    return biggest * abs(slope) + abs(intercept) >= _FLOAT32_MAX


_PIXEL_TAG = b"\xe0\x7f\x10\x00"


def _dtype_of(ds) -> np.dtype | None:
    bits = int(_fast(ds, "BitsAllocated", 0))
    stored = int(_fast(ds, "BitsStored", bits))
    signed = int(_fast(ds, "PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32) or (signed and stored != bits):
        return None  # signed values narrower than their container need sign extension: let pydicom do it
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")


def _native_pixels(path: str, ds, rows: int, cols: int, n_frames: int, blob: bytes | None = None):
    """Uncompressed little-endian pixel data taken from the end of the file (or of ``blob``, the file's bytes
    read while scanning), or None to fall back to pydicom.

    The element header in front of the expected number of bytes is checked (tag, VR, length), so a file whose
    Pixel Data is not the last element, or a truncated file, falls back to pydicom.
    """
    ts = _transfer_syntax(ds)
    if ts not in _NATIVE or int(_fast(ds, "SamplesPerPixel", 1)) != 1:
        return None
    dtype = _dtype_of(ds)
    if dtype is None:
        return None
    count = n_frames * rows * cols
    nbytes = count * dtype.itemsize
    padded = nbytes + (nbytes & 1)
    explicit = _NATIVE[ts]
    head = 12 if explicit else 8

    def header_ok(hdr: bytes) -> bool:
        if hdr[:4] != _PIXEL_TAG:
            return False
        if explicit:
            return hdr[4:6] in (b"OW", b"OB") and struct.unpack("<I", hdr[8:12])[0] == padded
        return struct.unpack("<I", hdr[4:8])[0] == padded

    if blob is not None:
        start = len(blob) - padded
        if start - head < 0 or not header_ok(blob[start - head : start]):
            return None
        return np.frombuffer(blob, dtype=dtype, count=count, offset=start).reshape(n_frames, rows, cols)
    try:
        size = os.path.getsize(path)
        if size < padded + head:
            return None
        with open(path, "rb") as fh:
            fh.seek(size - padded - head)
            if not header_ok(fh.read(head)):
                return None
            buf = np.empty(count, dtype=dtype)
            if fh.readinto(buf) != nbytes:
                return None
    except OSError:
        return None
    return buf.reshape(n_frames, rows, cols)


def _decoded_pixels(path: str, ds, rows: int, cols: int, n_frames: int) -> np.ndarray:
    """Decode with pydicom (compressed syntaxes, odd layouts); errors become DicomReadError naming the file."""
    import warnings

    import pydicom
    from pydicom.pixels import pixel_array

    ts = _transfer_syntax(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what pydicom tolerates is no news to the user; failures are below
            full = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001
        raise DicomReadError(f"cannot be read ({type(exc).__name__}: {exc})", path) from exc
    if "PixelData" not in full:
        raise DicomReadError("has no pixel data (the file is truncated or not an image)", path)
    if ts in _NATIVE:
        bits = int(full.get("BitsAllocated", 16) or 16)
        expected = n_frames * rows * cols * bits // 8
        have = len(full.PixelData or b"")
        if have < expected:
            raise DicomReadError(
                f"pixel data is truncated: {have} of {expected} bytes; the file is incomplete", path
            )
    try:
        arr = pixel_array(full)
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types; report them all the same way
        name = getattr(pydicom.uid.UID(ts), "name", ts) if ts else "unknown transfer syntax"
        raise DicomReadError(f"pixel data ({name}) cannot be decoded: {type(exc).__name__}: {exc}", path) from exc
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape != (n_frames, rows, cols):
        raise DicomReadError(
            f"pixel data has shape {arr.shape}, expected {(n_frames, rows, cols)} (frames, rows, columns)", path
        )
    return arr
