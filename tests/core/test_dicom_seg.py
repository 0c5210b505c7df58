"""DICOM SEG export: references the series it was drawn on (single-frame images or one Enhanced MR file), reads
back through highdicom, passes dciodvfy, keeps the synthetic marking of a synthetic image, and writes one coded
segment per label value."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

pytest.importorskip("highdicom")

from napari_medtrans.core.errors import ExportError, GeometryMismatchError, InvalidVolumeError  # noqa: E402
from napari_medtrans.core.io import load  # noqa: E402
from napari_medtrans.core.io.dicom_seg import (  # noqa: E402
    export_dicom_seg,
    export_image_and_seg,
    read_dicom_seg,
    segment_codes,
)
from napari_medtrans.core.io.dicom_write import write_dicom_series  # noqa: E402
from napari_medtrans.phantom import LABELS, make_subject  # noqa: E402
from napari_medtrans.core.volume import Volume  # noqa: E402

AFFINE = np.array([[1.0, 0, 0, -10], [0, 1.2, 0, -14], [0, 0, 3.0, 20], [0, 0, 0, 1]])


def _source(tmp_path, synthetic=False, enhanced=False):
    data = np.random.default_rng(0).random((20, 24, 5)).astype(np.float32) * 100
    write_dicom_series(Volume(data, AFFINE, modality="T2"), tmp_path / "src",
                       series_description="SYNTHETIC T2" if synthetic else "T2", synthetic=synthetic,
                       enhanced=enhanced)
    return load(tmp_path / "src")


def _reverse_frames(folder):
    """Rewrite an Enhanced MR file with its frames (per-frame groups and pixels) in reverse order."""
    (path,) = folder.iterdir()
    ds = pydicom.dcmread(path)
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(list(ds.PerFrameFunctionalGroupsSequence)[::-1])
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1]).tobytes()
    ds.save_as(path)


def _mask(shape):
    m = np.zeros(shape, np.float32)
    m[3:8, 4:10, 1:3] = 4  # edema
    m[10:12, 10:12, 2] = 6  # necrosis
    m[15, 20, 4] = 4
    return m


def _dciodvfy_errors(path) -> list[str]:
    proc = subprocess.run(["dciodvfy", os.fspath(path)], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
    # dicom3tools 2022 predates SyntheticData (0008,001C): it reports that one tag as unknown; ignore only that.
    return [ln for ln in lines if "(0x0008,0x001c)" not in ln]


def test_seg_references_the_source_series_and_reads_back(tmp_path):
    src = _source(tmp_path)
    mask = src.derive(_mask(src.shape))
    res = export_dicom_seg(mask, tmp_path / "seg.dcm", source=src, segment_labels={4: "edema", 6: "necrosis"},
                           algorithm="MedSAM2", algorithm_version="abc123")
    assert res.segments == {1: (4, "edema"), 2: (6, "necrosis")} and not res.synthetic_source
    ds = pydicom.dcmread(res.path)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == src.source.study_instance_uid
    assert ds.FrameOfReferenceUID == src.source.dicom_datasets[0].FrameOfReferenceUID
    assert ds.PatientID == src.source.dicom_datasets[0].PatientID
    assert ds.SeriesInstanceUID != src.source.series_instance_uid
    (ref_series,) = ds.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == src.source.series_instance_uid == res.referenced_series_uid
    assert {i.ReferencedSOPInstanceUID for i in ref_series.ReferencedInstanceSequence} == {
        h.SOPInstanceUID for h in src.source.dicom_datasets}
    seg1, seg2 = ds.SegmentSequence
    assert (seg1.SegmentLabel, seg2.SegmentLabel) == ("edema", "necrosis")
    assert seg1.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Edema"
    assert seg1.SegmentAlgorithmType == "SEMIAUTOMATIC" and seg1.SegmentAlgorithmName == "MedSAM2"
    assert ds.SeriesDescription == "SEG edema, necrosis by MedSAM2" and "SyntheticData" not in ds

    values = {n: v for n, (v, _) in res.segments.items()}
    back = read_dicom_seg(res.path, src, values=values)
    np.testing.assert_array_equal(back.data, mask.data)
    assert back.same_grid(src) and back.modality == "segmentation"


@pytest.mark.external
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not on PATH")
def test_seg_passes_dciodvfy(tmp_path):
    src = _source(tmp_path)
    res = export_dicom_seg(src.derive(_mask(src.shape)), tmp_path / "seg.dcm", source=tmp_path / "src",
                           segment_labels={4: "edema", 6: "necrosis"})
    assert _dciodvfy_errors(res.path) == []
    assert pydicom.dcmread(res.path).SegmentSequence[0].SegmentAlgorithmType == "MANUAL"


def test_synthetic_image_gets_a_seg_marked_synthetic(tmp_path):
    src = _source(tmp_path, synthetic=True)
    assert src.synthetic
    res = export_dicom_seg(src.derive(_mask(src.shape)), tmp_path / "seg.dcm", source=src, algorithm="SAM2")
    ds = pydicom.dcmread(res.path)
    assert res.synthetic_source and ds.SyntheticData == "YES"
    assert ds.SeriesDescription.startswith("SEG of SYNTHETIC")
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(res.path) == []


def test_synthetic_volume_with_its_inputs_headers_is_refused_then_exported_with_its_image(tmp_path):
    t1 = _source(tmp_path)  # stands for the T1 the synthetic image was translated from
    syn = t1.derive(t1.data * 0.5, modality="T2", synthetic=True, provenance={"method": "edts-trans"})
    mask = _mask(syn.shape)
    with pytest.raises(ExportError, match="export the synthetic image as its own series first"):
        export_dicom_seg(syn.derive(mask), tmp_path / "x.dcm", source=syn)
    series, seg = export_image_and_seg(syn, mask, tmp_path / "out", segment_labels={4: "edema", 6: "necrosis"},
                                       algorithm="MedSAM2")
    assert seg.synthetic_source and seg.referenced_series_uid == series.series_instance_uid
    written = load(tmp_path / "out" / "image")
    back = read_dicom_seg(seg.path, written, values={n: v for n, (v, _) in seg.segments.items()})
    np.testing.assert_array_equal(back.data, mask)


def test_nifti_like_volume_with_reversed_slices_is_exported_with_its_image(tmp_path):
    # k runs towards the patient's feet: the DICOM series stores the slices in the other order
    affine = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, -4.0, 30], [0, 0, 0, 1]])
    img = Volume(np.random.default_rng(1).random((16, 12, 4)).astype(np.float32), affine, modality="T1")
    mask = np.zeros(img.shape, np.float32)
    mask[2:6, 3:5, 0] = 1
    _, seg = export_image_and_seg(img, mask, tmp_path / "out")
    written = load(tmp_path / "out" / "image")
    back = read_dicom_seg(seg.path, written)
    world = lambda v, ijk: v.affine @ np.array([*ijk, 1.0])  # noqa: E731
    for ijk in np.argwhere(mask > 0):
        target = np.rint(np.linalg.solve(written.affine, world(img, ijk))[:3]).astype(int)
        assert back.data[tuple(target)] == 1
    assert back.data.sum() == mask.sum()


def test_bad_masks_and_sources_are_refused_with_reasons(tmp_path):
    src = _source(tmp_path)
    with pytest.raises(InvalidVolumeError, match="holds no segment"):
        export_dicom_seg(np.zeros(src.shape), tmp_path / "a.dcm", source=src)
    with pytest.raises(InvalidVolumeError, match="not whole numbers"):
        export_dicom_seg(np.full(src.shape, 0.5), tmp_path / "a.dcm", source=src)
    with pytest.raises(GeometryMismatchError, match="not on the source series' grid"):
        export_dicom_seg(np.ones((20, 24, 4)), tmp_path / "a.dcm", source=src)
    shifted = Volume(_mask(src.shape), src.affine @ np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], float))
    with pytest.raises(GeometryMismatchError, match="slice 0 of the mask lies at"):
        export_dicom_seg(shifted, tmp_path / "a.dcm", source=tmp_path / "src")
    nifti_like = Volume(src.data, src.affine)
    with pytest.raises(ExportError, match="not read from DICOM"):
        export_dicom_seg(_mask(src.shape), tmp_path / "a.dcm", source=nifti_like)
    export_dicom_seg(_mask(src.shape), tmp_path / "a.dcm", source=src)
    with pytest.raises(ExportError, match="file exists"):
        export_dicom_seg(_mask(src.shape), tmp_path / "a.dcm", source=src)


SCT = {"edema": "79654002", "enhancing rim": "108369006", "necrosis": "6574001"}  # Edema, Neoplasm, Necrosis


@pytest.mark.parametrize("reverse", [False, True], ids=["frames-in-slice-order", "frames-reversed"])
def test_enhanced_mr_source_references_its_frames_and_reads_back(tmp_path, reverse):
    src = _source(tmp_path, enhanced=True)
    if reverse:  # frame 1 is then the most superior slice: the SEG must follow frame numbers, not k
        _reverse_frames(tmp_path / "src")
        src = load(tmp_path / "src")
    (enh,) = src.source.dicom_datasets
    assert int(enh.NumberOfFrames) == 5 and enh.SOPClassUID == pydicom.uid.EnhancedMRImageStorage
    mask = src.derive(_mask(src.shape))
    mask.data[0:2, 0:3, 0] = 5
    res = export_dicom_seg(mask, tmp_path / "seg.dcm", source=tmp_path / "src",
                           segment_labels={4: "edema", 5: "enhancing rim", 6: "necrosis"}, algorithm="MedSAM2")
    assert res.segments == {1: (4, "edema"), 2: (5, "enhancing rim"), 3: (6, "necrosis")}
    ds = pydicom.dcmread(res.path)
    (ref_series,) = ds.ReferencedSeriesSequence
    (ref,) = ref_series.ReferencedInstanceSequence
    assert ref.ReferencedSOPInstanceUID == enh.SOPInstanceUID
    assert ds.FrameOfReferenceUID == enh.FrameOfReferenceUID and ds.StudyInstanceUID == enh.StudyInstanceUID
    # each SEG frame lies where the source frame it references lies
    source_ipp = [[float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
                  for item in enh.PerFrameFunctionalGroupsSequence]
    seen = set()
    for item in ds.PerFrameFunctionalGroupsSequence:
        (source_image,) = item.DerivationImageSequence[0].SourceImageSequence
        assert source_image.ReferencedSOPInstanceUID == enh.SOPInstanceUID
        f = int(source_image.ReferencedFrameNumber)
        np.testing.assert_allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                                   source_ipp[f - 1], atol=1e-4)
        seen.add(f)
    first_slice = int(np.argmin([p[2] for p in source_ipp])) + 1  # k = 0 is the most inferior slice
    assert first_slice == (5 if reverse else 1) and first_slice in seen  # slice 0 holds edema and the rim
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(res.path) == []
    back = read_dicom_seg(res.path, src, values={n: v for n, (v, _) in res.segments.items()})
    np.testing.assert_array_equal(back.data, mask.data)
    assert back.same_grid(src)


def test_enhanced_mr_source_off_its_grid_or_without_plane_positions_is_refused(tmp_path):
    src = _source(tmp_path, enhanced=True)
    shifted = Volume(_mask(src.shape), src.affine @ np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.5], [0, 0, 0, 1]], float))  # half a slice up
    with pytest.raises(GeometryMismatchError, match="slice 0 of the mask lies at"):
        export_dicom_seg(shifted, tmp_path / "a.dcm", source=tmp_path / "src")
    with pytest.raises(GeometryMismatchError, match="not on the source series' grid"):
        export_dicom_seg(np.ones((20, 24, 4)), tmp_path / "a.dcm", source=src)
    del src.source.dicom_datasets[0].PerFrameFunctionalGroupsSequence[2].PlanePositionSequence
    with pytest.raises(ExportError, match="frame 3 of the multi-frame source has no PlanePositionSequence"):
        export_dicom_seg(_mask(src.shape), tmp_path / "a.dcm", source=src)


@pytest.fixture(scope="module")
def tumour_subject():
    return make_subject(3, shape=(40, 40, 12), tumour=True, contrasts=("T2",), bias=False, deform=False)


def test_phantom_tumour_parts_become_three_coded_segments_and_read_back(tmp_path, tumour_subject):
    s = tumour_subject
    write_dicom_series(s.images["T2"], tmp_path / "t2", series_description="T2 AX", enhanced=True)
    t2 = load(tmp_path / "t2")
    labels = s.labels
    # the tumour parts of the phantom's label map, carried onto the grid of the series as it was read back
    onto = np.linalg.inv(labels.affine) @ t2.affine
    ijk = np.rint(np.einsum("ab,bijk->aijk", onto[:3, :3], np.indices(t2.shape)) + onto[:3, 3, None, None, None])
    parts = labels.data[tuple(ijk.astype(int))]
    parts = np.where(np.isin(parts, (4, 5, 6)), parts, 0)
    assert {4, 5, 6} <= set(np.unique(parts).astype(int))
    tumour = t2.derive(parts, modality="labels", provenance={"labels": dict(LABELS)})
    res = export_dicom_seg(tumour, tmp_path / "seg.dcm", source=t2)  # names from the label map itself
    assert res.segments == {1: (4, "edema"), 2: (5, "enhancing rim"), 3: (6, "necrosis")}
    ds = pydicom.dcmread(res.path)
    assert ds.SegmentationType == "BINARY" and len(ds.SegmentSequence) == 3
    for item in ds.SegmentSequence:
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"  # morphologically abnormal
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == SCT[item.SegmentLabel]
        assert item.SegmentAlgorithmType == "MANUAL"
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(res.path) == []
    back = read_dicom_seg(res.path, t2, values={n: v for n, (v, _) in res.segments.items()})
    np.testing.assert_array_equal(back.data, parts)


def test_segment_codes_and_explicit_codes(tmp_path):
    from pydicom.sr.codedict import codes

    assert segment_codes("peritumoral oedema") == (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Edema)
    assert segment_codes("CSF")[1] == codes.SCT.CerebrospinalFluid
    assert segment_codes("GM") == (codes.SCT.AnatomicalStructure, codes.SCT.GrayMatter)
    assert segment_codes("white matter")[1] == codes.SCT.WhiteMatter
    assert segment_codes("segment 3") == (codes.SCT.Tissue, codes.SCT.Tissue)
    src = _source(tmp_path)
    res = export_dicom_seg(src.derive(_mask(src.shape)), tmp_path / "seg.dcm", source=src,
                           property_codes={6: (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion)})
    first, second = pydicom.dcmread(res.path).SegmentSequence
    assert (first.SegmentLabel, second.SegmentLabel) == ("segment 4", "segment 6")
    assert first.SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"  # Tissue
    assert second.SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"  # Lesion
