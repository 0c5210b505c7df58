"""core/compare.py: the one rule for comparing a synthetic image with a reference, and the default reference."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medtrans.core.compare import check_comparable, modality_text, pick_reference, same_modality
from napari_medtrans.core.errors import MedtransError, ModalityMismatchError
from napari_medtrans.core.volume import SourceInfo, Volume


def vol(modality, synthetic=False, path=None, data=None):
    data = np.zeros((4, 4, 2), np.float32) if data is None else data
    return Volume(data, np.eye(4), modality=modality, synthetic=synthetic, source=SourceInfo(path=path))


def test_same_contrast_is_allowed_without_warning():
    assert check_comparable(vol("T2", synthetic=True), vol("t2w")) == []  # spellings are normalised
    assert same_modality("FLAIR", "flair") is True and same_modality("T1", "T1c") is False
    assert same_modality(None, "T2") is None


def test_different_contrasts_are_refused_with_both_named():
    with pytest.raises(ModalityMismatchError) as info:
        check_comparable(vol("T2", synthetic=True), vol("PD", path="/data/sub-000/PD.nii.gz"))
    err = info.value
    assert isinstance(err, MedtransError) and (err.synthetic, err.reference) == ("T2", "PD")
    assert str(err).startswith("/data/sub-000/PD.nii.gz: ") and "choose a T2 reference" in str(err)
    with pytest.raises(ModalityMismatchError, match="T1c"):
        check_comparable(vol("T1c", synthetic=True), vol("T2"))


def test_the_override_turns_the_refusal_into_a_warning():
    notes = check_comparable(vol("T2", synthetic=True), vol("PD"), allow_mismatch=True)
    assert len(notes) == 1 and "different contrasts" in notes[0] and "PD" in notes[0]


@pytest.mark.parametrize("syn, ref, words", [(None, "T2", "synthetic image's contrast is unknown"),
                                             ("T2", None, "reference's contrast is unknown"),
                                             (None, None, "neither")])
def test_an_unknown_contrast_is_allowed_with_a_warning(syn, ref, words):
    notes = check_comparable(vol(syn, synthetic=True), vol(ref))
    assert len(notes) == 1 and words in notes[0]


def test_self_comparison_and_synthetic_references_are_flagged():
    a = vol("FLAIR", data=np.ones((4, 4, 2), np.float32))
    view = Volume(a.data.transpose(0, 1, 2), a.affine, modality="FLAIR")  # another Volume on the same voxels
    assert any("itself" in n for n in check_comparable(a, a))
    assert any("itself" in n for n in check_comparable(a, view))
    assert any("synthetic too" in n for n in check_comparable(vol("T2", True), vol("T2", True)))


def test_default_reference_is_same_contrast_and_never_itself():
    folder = [("FLAIR", "FLAIR"), ("PD", "PD"), ("T1", "T1"), ("T1c", "T1c"), ("T2", "T2")]
    assert pick_reference(("SYNTHETIC T2", "T2"), folder) == "T2"
    assert pick_reference(("SYNTHETIC T1c", "T1c"), folder) == "T1c"
    assert pick_reference(("FLAIR", "FLAIR"), folder) is None  # the only FLAIR is itself
    assert pick_reference(("syn", "T2"), [("PD", "PD"), ("x", None)]) is None  # no T2: nothing, not PD
    assert pick_reference(("layer", None), [("layer", None), ("T1", "T1")]) == "T1"  # unknown: another image
    assert modality_text(None) == "contrast unknown" and modality_text("t2w") == "T2"
