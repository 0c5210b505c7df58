"""Reading one DICOM file's header, and the attribute values the reader needs from it.

* :func:`_read_header` reads the head of one file and classifies it: a DICOM image with a series, another DICOM
  object or not DICOM at all (skipped), or a DICOM file that cannot be read or parsed (reported).
* A fast parser (:func:`_fast_header`) splits the common encodings (explicit or implicit VR little endian, defined
  lengths) into the same raw elements pydicom's reader makes, without its per-element overhead; anything unusual
  is left to pydicom.
* :func:`_fast` and :func:`_text` read numeric and string attributes straight from their raw bytes, skipping
  pydicom's value conversion on the hot path.
"""

from __future__ import annotations

import os
import stat
import struct

from .paths import os_reason


#: Bytes read at once to parse a header from memory (a typical MR header is 2-20 kB).
_HEAD_BYTES = 256 * 1024
#: Uncompressed transfer syntaxes the fast paths handle, mapped to whether their VR is explicit.
_NATIVE = {"1.2.840.10008.1.2": False, "1.2.840.10008.1.2.1": True}  # implicit / explicit VR little endian


class _Blobs(dict):
    """Whole small files read while scanning, kept (up to ``budget`` bytes) so their pixels are not read twice."""

    def __init__(self, budget: int):
        super().__init__()
        self.budget = budget

    def offer(self, path: str, data: bytes) -> None:
        if len(data) <= self.budget:
            self[path] = data
            self.budget -= len(data)


def _read_header(path: str, blobs: _Blobs | None = None):
    """('ok', dataset) | ('skip', None) | ('bad', reason) for one file.

    The head of the file is read in one call and parsed from memory (a fast splitter for the common
    encodings, else pydicom on a BytesIO); parsing stops before the pixel data. When the header runs past the
    chunk, pydicom parses the whole file with large elements deferred. A file that fit in the chunk is offered
    to ``blobs`` so that its pixel data need not be read again.
    """
    import io
    import warnings

    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # Non-blocking, so that a named pipe in the folder is skipped instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "skip", None  # a pipe, socket or device: not a DICOM file
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        # Unreadable is not "not DICOM": the file might be a slice of the series.
        return "bad", f"cannot be read ({os_reason(exc)})"
    if len(head) < 132 or head[128:132] != b"DICM":
        return "skip", None  # no DICOM preamble: not a DICOM Part 10 file
    complete = len(head) < _HEAD_BYTES
    try:
        ds = _fast_header(head, path)
        if ds is not None:
            result = _classify(ds)
            if blobs is not None and complete and result[0] == "ok":
                blobs.offer(path, head)
            return result
        buf = io.BytesIO(head)
        try:
            with warnings.catch_warnings():
                # pydicom warns about what it tolerates; a file it cannot parse is reported below instead.
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(buf, stop_before_pixels=True)
            partial = not complete and buf.tell() >= len(head) - 8
        except InvalidDicomError:
            raise
        except Exception:  # noqa: BLE001 - an element cut at the chunk's end; decided below on the whole file
            if complete:
                raise
            partial = True
        if partial:
            # The header continues past the chunk: parse the whole file, deferring large elements.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size="64 KB")
    except InvalidDicomError:
        return "skip", None
    except Exception as exc:  # noqa: BLE001 - any parser failure on a DICOM file is reported, never raised raw
        return "bad", f"header cannot be parsed, the file is corrupt or truncated ({type(exc).__name__}: {exc})"
    ds.filename = path
    if getattr(ds, "buffer", None) is not None:
        ds.buffer = None  # pydicom keeps the parsed BytesIO; drop it so headers do not hold file contents
    return _classify(ds)


def _classify(ds):
    """('ok', ds) for an image with a series, ('skip', None) for other DICOM objects, else ('bad', reason)."""
    if "Rows" in ds and "SeriesInstanceUID" in ds:
        return "ok", ds
    meta_sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    sop = str(ds.get("SOPClassUID", "") or meta_sop)
    if sop and not _is_image_sop(sop):
        return "skip", None  # DICOMDIR, structured report, presentation state, ...
    return "bad", "header is incomplete (no Rows or SeriesInstanceUID): the file is truncated or corrupt"


def _is_image_sop(uid: str) -> bool:
    from pydicom.uid import UID

    name = UID(uid).name
    return "Image" in name and "Storage" in name


# -- fast header parsing ------------------------------------------------------------------------------------

_VR_BYTES: dict[bytes, str] = {}
_LONG_VR: frozenset = frozenset()
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _vr_tables():
    global _VR_BYTES, _LONG_VR
    if not _VR_BYTES:
        from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

        _VR_BYTES = {v.value.encode(): str(v.value) for v in VR if len(v.value) == 2}
        _LONG_VR = frozenset(str(v.value) for v in EXPLICIT_VR_LENGTH_32)
    return _VR_BYTES, _LONG_VR


def _split_elements(buf: bytes, pos: int, implicit: bool, meta: bool):
    """Top-level elements of ``buf`` from ``pos`` as pydicom RawDataElements, the way pydicom's reader makes them.

    Stops at the pixel data (or, for ``meta``, at the first element outside group 0002). Returns
    ``(elements, position)``, or None whenever anything is unusual (undefined lengths, unknown VRs, command
    elements, a value running past the buffer): the caller then lets pydicom parse the file.
    """
    from pydicom.dataelem import RawDataElement, empty_value_for_VR
    from pydicom.tag import BaseTag

    vr_bytes, long_vr = _vr_tables()
    head = struct.Struct("<HHI" if implicit else "<HH2sH").unpack_from
    long_len = struct.Struct("<I").unpack_from
    end = len(buf)
    elements = {}
    if not meta and pos + 6 <= end:
        looks_explicit = buf[pos + 4 : pos + 6] in vr_bytes
        if looks_explicit == implicit:
            return None  # encoding differs from the transfer syntax: pydicom's heuristics handle it
    reached_stop = False
    while pos + 8 <= end:
        if implicit:
            group, elem, length = head(buf, pos)
            vr = None
            vpos = pos + 8
        else:
            group, elem, vrb, length = head(buf, pos)
            vr = vr_bytes.get(vrb)
            if vr is None:
                if meta and group != 2:
                    reached_stop = True
                    break
                return None
            vpos = pos + 8
            if vr in long_vr:
                if pos + 12 > end:
                    return None
                (length,) = long_len(buf, pos + 8)
                vpos = pos + 12
        tag = group << 16 | elem
        if (meta and group != 2) or tag in _PIXEL_TAGS:
            reached_stop = True
            break
        if group == 0x0000 or group == 0xFFFE or length == 0xFFFFFFFF or vpos + length > end:
            return None
        btag = BaseTag(tag)
        elements[btag] = RawDataElement(
            btag, vr, length, buf[vpos : vpos + length] if length else empty_value_for_VR(vr, raw=True),
            vpos, implicit, True,
        )
        pos = vpos + length
    if not reached_stop:
        if pos != end:
            return None  # a few stray bytes: truncated
        if not meta:
            return None  # no pixel data reached inside the chunk: the header may continue
    return elements, pos


def _fast_header(head: bytes, path: str):
    """Parse a Part 10 header from memory without pydicom's per-element overhead, or None to use pydicom.

    Handles the common case (explicit or implicit VR little endian, defined lengths) and builds the same
    FileDataset of raw elements that :func:`pydicom.dcmread` would, so values are converted lazily as usual.
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    got = _split_elements(head, 132, implicit=False, meta=True)
    if got is None or not got[0]:
        return None
    meta_elems, pos = got
    file_meta = FileMetaDataset(meta_elems)
    file_meta.set_original_encoding(is_implicit_vr=False, is_little_endian=True, character_encoding="iso8859")
    ts_elem = meta_elems.get(0x00020010)
    if ts_elem is None or not isinstance(ts_elem.value, bytes):
        return None
    ts = ts_elem.value.decode("ascii", "replace").strip(" \x00")
    if ts not in _NATIVE:
        return None
    implicit = not _NATIVE[ts]
    got = _split_elements(head, pos, implicit=implicit, meta=False)
    if got is None:
        return None
    dataset = Dataset(got[0])
    ds = FileDataset(path, dataset, head[:128], file_meta, implicit, True)
    ds.set_original_encoding(implicit, True, dataset._character_set)
    return ds


# -- attribute values without conversion --------------------------------------------------------------------


#: Numeric and code-string attributes read straight from their raw bytes on the hot path (see :func:`_fast`).
_FAST = {
    "ImagePositionPatient": (0x00200032, "DS"),
    "ImageOrientationPatient": (0x00200037, "DS"),
    "PixelSpacing": (0x00280030, "DS"),
    "SliceThickness": (0x00180050, "DS"),
    "SpacingBetweenSlices": (0x00180088, "DS"),
    "RescaleIntercept": (0x00281052, "DS"),
    "RescaleSlope": (0x00281053, "DS"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "SamplesPerPixel": (0x00280002, "US"),
    "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"),
    "PixelRepresentation": (0x00280103, "US"),
    "SyntheticData": (0x0008001C, "CS"),
}


def _fast(ds, keyword: str, default=None):
    """``ds.get(keyword)`` without pydicom's value conversion (validation dominates the read time otherwise).

    DS/IS values come back as a list of strings (one per value), US as an int, CS as a stripped string; an
    absent or empty attribute gives ``default``. Elements pydicom has already converted are used as they are.
    """
    tag, vr = _FAST[keyword]
    elem = ds.get_item(tag)
    if elem is None:
        return default
    raw = elem.value
    if getattr(elem, "is_raw", False) and isinstance(raw, bytes):
        if vr == "US":
            if len(raw) != 2:
                return ds[tag].value
            return int.from_bytes(raw, "little" if elem.is_little_endian else "big")
        text = raw.decode("ascii", "replace").strip(" \x00")
        if not text:
            return default
        return text if vr == "CS" else [t.strip() for t in text.split("\\")]
    value = ds[tag].value
    if value is None or value == "":
        return default
    if vr in ("DS", "IS"):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            return [value]
        return list(value)
    return value


def _text(ds, tag: int) -> str:
    """A string attribute (UI, CS, LO, ...) as text, read from the raw bytes when pydicom has not converted it."""
    elem = ds.get_item(tag)
    if elem is None:
        return ""
    if getattr(elem, "is_raw", False) and isinstance(elem.value, bytes):
        return elem.value.decode("ascii", "replace").strip(" \x00")
    value = ds[tag].value
    return "" if value is None else str(value)


def _transfer_syntax(ds) -> str:
    meta = getattr(ds, "file_meta", None)
    return _text(meta, 0x00020010) if meta is not None else ""
