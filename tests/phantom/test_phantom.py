"""Phantom: reproducible, physically ordered contrasts, per-contrast SNR, tumours, both anatomies, dataset writing.

Tests of the procedural head name it (``anatomy="procedural"``); the MNI152 anatomy is the default.
"""

import json
import sys

import numpy as np
import pytest

from napari_medtrans import phantom
from napari_medtrans.core import io
from napari_medtrans.core.dataset import load_dataset
from napari_medtrans.core.errors import MissingDependencyError, UnknownChoiceError
from napari_medtrans.phantom import (
    CONTRASTS,
    SEQUENCES,
    SNR_RATIO,
    TISSUES,
    assign_splits,
    has_tumour,
    make_subject,
    signal,
    subject_seed,
    write_phantom_dataset,
)
from napari_medtrans.phantom import acquisition, anatomy, relaxation

SMALL = (32, 32, 16)
PROC = dict(anatomy="procedural")
# Default in-plane resolution on a smaller field of view: label means are not dominated by partial volume.
CROP = dict(shape=(64, 64, 32), spacing=(1.5, 1.5, 2.0))


def _means(subject, contrast, labels=(1, 2, 3)):
    lab = subject.labels.data
    return [float(subject.images[contrast].data[lab == k].mean()) for k in labels]


def _mni_available() -> str | None:
    """None when nilearn can load its MNI152 templates offline, else the reason."""
    try:
        phantom.mni_templates()
    except Exception as exc:  # noqa: BLE001 - any failure is a reason to skip, reported as such
        return f"nilearn cannot load its MNI152 templates here: {exc}"
    return None


@pytest.fixture(scope="module")
def small():
    return make_subject(7, shape=SMALL, **PROC)


def test_same_seed_gives_identical_arrays_and_another_seed_differs(small):
    again = make_subject(7, shape=SMALL, **PROC)
    for c in CONTRASTS:
        assert np.array_equal(small.images[c].data, again.images[c].data)
    assert np.array_equal(small.labels.data, again.labels.data)
    assert np.array_equal(small.brain_mask.data, again.brain_mask.data)
    assert json.dumps(small.params, sort_keys=True) == json.dumps(again.params, sort_keys=True)

    other = make_subject(8, shape=SMALL, **PROC)
    assert not np.array_equal(small.labels.data, other.labels.data)
    for c in CONTRASTS:
        assert not np.allclose(small.images[c].data, other.images[c].data)


def test_volumes_share_one_centred_ras_grid_and_carry_provenance(small):
    assert set(small.images) == set(CONTRASTS)
    ref = small.labels
    assert ref.shape == SMALL and ref.orientation == "RAS"
    assert ref.spacing == pytest.approx((192 / 32, 192 / 32, 160 / 16))
    centre = ref.affine @ np.r_[(np.array(SMALL) - 1) / 2.0, 1.0]
    assert np.allclose(centre[:3], 0.0)
    for c, vol in small.images.items():
        assert vol.same_grid(ref) and vol.modality == c
        assert vol.data.dtype == np.float32 and np.all(np.isfinite(vol.data)) and vol.data.min() >= 0
        assert vol.source.kind == "phantom" and not vol.synthetic
        assert vol.provenance["seed"] == 7 and vol.provenance["snr"] == 30.0
        assert vol.provenance["snr_wm"] == pytest.approx(30.0 * SNR_RATIO[c])
        assert vol.provenance["anatomy"] == "procedural"
        assert vol.provenance["mr_parameters"]["RepetitionTime"] == SEQUENCES[3.0][c]["TR"]
    assert small.brain_mask.same_grid(ref)


def test_label_values_and_brain_mask(small):
    lab = small.labels.data
    assert np.array_equal(lab, np.round(lab))
    assert set(np.unique(lab).astype(int)) == {0, 1, 2, 3}
    assert np.array_equal(small.brain_mask.data, (lab > 0).astype(np.float32))
    assert set(np.unique(small.brain_mask.data)) == {0.0, 1.0}
    # background dominates the corners, brain the centre
    assert lab[0, 0, 0] == 0 and lab[16, 16, 9] > 0


def test_default_shape_covers_a_head_and_spacing_follows_shape():
    s = make_subject(0, shape=(24, 24, 10), snr=None, contrasts=("T1",), **PROC)
    assert s.labels.spacing == pytest.approx((8.0, 8.0, 16.0))
    s2 = make_subject(0, shape=(20, 20, 10), spacing=(4.0, 4.0, 4.0), snr=None, contrasts=("T1",), **PROC)
    assert s2.labels.spacing == pytest.approx((4.0, 4.0, 4.0))
    if _mni_available() is None:  # the default anatomy and grid: MNI152 at 1.5 x 1.5 x 2 mm
        s3 = make_subject(0, shape=(30, 36, 22), snr=None, contrasts=("T1",))
        assert s3.params["anatomy"] == "mni152"
        assert s3.labels.spacing == pytest.approx((6.0, 6.0, 8.0))
        assert phantom.DEFAULT_SHAPE["mni152"] == (120, 144, 88)


@pytest.mark.parametrize("anatomy", ["procedural", "mni152"])
@pytest.mark.parametrize("seed", [0, 1])
def test_tissue_contrast_orderings_at_3T(anatomy, seed):
    if anatomy == "mni152" and (why := _mni_available()):
        pytest.skip(why)
    s = make_subject(seed, anatomy=anatomy, snr=None, bias=False, registered=True, **CROP)
    csf, gm, wm = _means(s, "T1")
    assert wm > gm > csf
    csf, gm, wm = _means(s, "T2")
    assert csf > gm > wm
    csf, gm, wm = _means(s, "FLAIR")
    assert gm > wm and csf < 0.5 * wm  # CSF nulled
    csf, gm, wm = _means(s, "PD")
    assert csf >= 0.95 * gm and gm > wm
    # without contrast uptake outside tumours, T1c differs from T1 by a few percent at most in GM and WM (the CSF
    # label of the MNI152 anatomy also holds the enhancing choroid plexus and vessels)
    t1, t1c = _means(s, "T1", (2, 3)), _means(s, "T1c", (2, 3))
    assert all(0.999 < b / a < 1.06 for a, b in zip(t1, t1c)), (t1, t1c)


@pytest.mark.parametrize("snr", [12.0, 30.0, {"T1": 40.0, "FLAIR": 10.0}])
def test_white_matter_snr_is_the_requested_one_per_contrast(snr):
    kw = dict(shape=(48, 48, 24), registered=True, **PROC)
    noisy = make_subject(3, snr=snr, **kw)
    clean = make_subject(3, snr=None, **kw)
    wm = clean.labels.data == 3
    air = clean.images["T1"].data == 0  # pure air: no signal, only noise
    assert air.sum() > 1000
    for c in CONTRASTS:
        want = snr[c] if isinstance(snr, dict) and c in snr else (
            (snr["T1"] if isinstance(snr, dict) else snr) * SNR_RATIO[c])
        n, f = noisy.images[c].data, clean.images[c].data
        measured = f[wm].mean() / (n[wm] - f[wm]).std()
        assert measured == pytest.approx(want, rel=0.15), c
        # from the noisy image alone: Rayleigh background, E[M^2] = 2 sigma^2
        sigma = np.sqrt((n[air] ** 2).mean() / 2.0)
        assert n[wm].mean() / sigma == pytest.approx(want, rel=0.15), c
        assert noisy.params["noise_sigma"][c] == pytest.approx(sigma, rel=0.05)
        assert noisy.params["snr_wm"][c] == pytest.approx(want)
    # as on 3 T scanners: FLAIR and T1c below T1, PD above
    assert SNR_RATIO["FLAIR"] < 1 and SNR_RATIO["T1c"] < 1 < SNR_RATIO["PD"]


def test_noise_is_rician_not_gaussian():
    s = make_subject(4, shape=(48, 48, 24), snr=20.0, contrasts=("T2",), **PROC)
    clean = make_subject(4, shape=(48, 48, 24), snr=None, contrasts=("T2",), **PROC)
    air = clean.images["T2"].data == 0
    bg = s.images["T2"].data[air]
    sigma = s.params["noise_sigma"]["T2"]
    assert bg.min() >= 0
    # Rayleigh: mean = sigma sqrt(pi/2); a Gaussian would average to zero
    assert bg.mean() / sigma == pytest.approx(np.sqrt(np.pi / 2), rel=0.05)


def test_bias_field_is_smooth_and_within_twenty_percent():
    kw = dict(shape=(48, 48, 24), snr=None, contrasts=("PD",), registered=True, **PROC)
    flat = make_subject(5, bias=False, **kw).images["PD"].data
    biased = make_subject(5, bias=True, **kw).images["PD"].data
    head = flat > 0.05 * flat.max()
    ratio = biased[head] / flat[head]
    assert 0.78 < ratio.min() and ratio.max() < 1.27
    assert ratio.max() / ratio.min() > 1.08  # it is there
    field = np.ones_like(flat)
    field[head] = ratio
    # smooth: neighbouring voxels differ by a fraction of a percent
    step = np.abs(np.diff(field, axis=0))[head[1:] & head[:-1]]
    assert step.max() < 0.02


def test_deformation_changes_anatomy_by_a_few_mm():
    kw = dict(shape=(48, 48, 32), snr=None, contrasts=("T1",), **PROC)
    rigid = make_subject(6, deform=False, **kw)
    moved = make_subject(6, deform=True, **kw)
    assert rigid.params["deformation"] == {"enabled": False}
    d = moved.params["deformation"]
    assert 0.5 < d["displacement_rms_mm"] < 4.0 and d["displacement_max_mm"] < 10.0
    a, b = rigid.brain_mask.data > 0, moved.brain_mask.data > 0
    assert not np.array_equal(a, b)
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice > 0.85
    vox = np.prod(rigid.labels.spacing)
    centroid = lambda m: (rigid.labels.affine @ np.r_[np.argwhere(m).mean(0), 1.0])[:3]  # noqa: E731
    assert np.linalg.norm(centroid(a) - centroid(b)) < 8.0
    assert abs(a.sum() - b.sum()) * vox / (a.sum() * vox) < 0.25


def test_tissue_parameters_are_jittered_per_subject():
    p0 = make_subject(0, shape=(16, 16, 8), contrasts=("T1",), **PROC).params["tissues"]
    p1 = make_subject(1, shape=(16, 16, 8), contrasts=("T1",), **PROC).params["tissues"]
    for t in ("wm", "gm", "csf"):
        nominal = TISSUES[3.0][t]
        for k, key in enumerate(("T1", "T2", "PD")):
            assert p0[t][key] == pytest.approx(nominal[k], rel=0.08)
        assert p0[t]["T1"] != p1[t]["T1"]


def test_tumour_labels_only_with_tumour_and_rim_enhances():
    kw = dict(shape=(64, 64, 32), spacing=(2.5, 2.5, 4.0), snr=None, bias=False, **PROC)
    plain = make_subject(12, **kw)
    sick = make_subject(12, tumour=True, **kw)
    assert plain.labels.data.max() == 3 and plain.params["tumour_params"] is None
    assert not sick.params["tumour_params"]["solid"]
    solid = make_subject(11, tumour=True, **kw)  # about one tumour in seven has no necrotic core
    assert solid.params["tumour_params"]["solid"] and 6 not in solid.labels.data and 5 in solid.labels.data
    lab = sick.labels.data
    assert {4, 5, 6} <= set(np.unique(lab).astype(int))
    assert np.all(sick.brain_mask.data[lab >= 4] == 1)
    t1 = lambda k: sick.images["T1"].data[lab == k].mean()  # noqa: E731
    t1c = lambda k: sick.images["T1c"].data[lab == k].mean()  # noqa: E731
    flair = lambda k: sick.images["FLAIR"].data[lab == k].mean()  # noqa: E731
    assert t1c(5) > 1.3 * t1(5)  # enhancing rim
    assert t1c(5) > t1c(3) and t1c(5) > 1.3 * t1c(6)  # bright ring, dark core
    assert t1c(3) < 1.05 * t1(3)  # white matter barely changes
    assert flair(4) > 1.4 * flair(3)  # edema bright on FLAIR
    assert sick.images["T2"].data[lab == 6].mean() > sick.images["T2"].data[lab == 3].mean()


def test_tumour_and_noise_streams_leave_the_rest_of_the_subject_unchanged():
    kw = dict(shape=(40, 40, 20), mass_effect=False, registered=True, **PROC)
    plain = make_subject(12, snr=None, **kw)
    sick = make_subject(12, snr=None, tumour=True, **kw)
    tp = sick.params["tumour_params"]
    changed = np.any([plain.images[c].data != sick.images[c].data for c in CONTRASTS], axis=0)
    assert changed.any()
    idx = np.argwhere(changed)
    pos = (sick.labels.affine @ np.c_[idx, np.ones(len(idx))].T)[:3].T
    dist = np.linalg.norm(pos - np.array(tp["centre_mm"]), axis=1)
    assert dist.max() <= 1.75 * tp["edema_radius_mm"] + 2 * max(sick.labels.spacing)
    # the same noise draws: away from the tumour only sigma (mean WM / SNR) moves, by a hair
    noisy_plain = make_subject(12, snr=25.0, **kw)
    noisy_sick = make_subject(12, snr=25.0, tumour=True, **kw)
    far = ~np.zeros(changed.shape, bool)
    far[tuple(idx.T)] = False
    for c in ("T1", "FLAIR"):
        sigma = noisy_plain.params["noise_sigma"][c]
        assert noisy_sick.params["noise_sigma"][c] == pytest.approx(sigma, rel=0.05)
        diff = np.abs(noisy_plain.images[c].data - noisy_sick.images[c].data)[far]
        assert diff.max() < 0.2 * sigma
    # a subset of contrasts is the same as those contrasts of the full set
    only_t2 = make_subject(12, contrasts=("T2",), snr=25.0, **kw)
    assert list(only_t2.images) == ["T2"]
    assert np.array_equal(only_t2.images["T2"].data, noisy_plain.images["T2"].data)


def test_procedural_anatomy_is_resolution_independent():
    coarse = make_subject(9, shape=(32, 32, 26), snr=None, contrasts=("T1",), **PROC)
    fine = make_subject(9, shape=(64, 64, 52), snr=None, contrasts=("T1",), **PROC)
    litres = lambda s, k: (s.labels.data == k).sum() * np.prod(s.labels.spacing) / 1e6  # noqa: E731
    brain = lambda s: (s.brain_mask.data > 0).sum() * np.prod(s.labels.spacing) / 1e6  # noqa: E731
    assert brain(coarse) == pytest.approx(brain(fine), rel=0.05)
    assert litres(coarse, 3) == pytest.approx(litres(fine, 3), rel=0.15)
    # an adult brain: 1.1 to 1.9 litres inside the skull
    assert brain(fine) > 1.1 and brain(fine) < 1.9
    assert 0.4 < litres(fine, 3) < 0.9 and 0.3 < litres(fine, 2) < 1.0


def test_mni152_anatomy_loads_real_anatomy():
    if why := _mni_available():
        pytest.skip(why)
    s = make_subject(0, anatomy="mni152", shape=(45, 54, 44), snr=None)
    assert s.labels.spacing == pytest.approx((4.0, 4.0, 4.0))
    assert s.params["anatomy"] == "mni152"
    lab = s.labels.data
    assert set(np.unique(lab).astype(int)) == {0, 1, 2, 3}
    litres = lambda k: (lab == k).sum() * 64 / 1e6  # noqa: E731
    # the MNI152 templates hold about 1.0 l of GM and 0.67 l of WM
    assert 0.7 < litres(2) < 1.3 and 0.4 < litres(3) < 0.9
    # left-right symmetric template: the mask is close to its mirror image
    m = s.brain_mask.data > 0
    assert (m & m[::-1]).sum() / m.sum() > 0.85
    again = make_subject(0, anatomy="mni152", shape=(45, 54, 44), snr=None)
    assert np.array_equal(s.images["T2"].data, again.images["T2"].data)


def test_mni152_without_nilearn_is_a_clear_error(monkeypatch):
    anatomy.mni_templates.cache_clear()
    monkeypatch.setitem(sys.modules, "nilearn", None)
    try:
        with pytest.raises(MissingDependencyError, match="nilearn") as info:
            make_subject(0, anatomy="mni152", shape=SMALL)
        assert "pip install" in str(info.value) and isinstance(info.value, ImportError)
        make_subject(0, anatomy="procedural", shape=SMALL)  # the procedural head needs no data
    finally:
        anatomy.mni_templates.cache_clear()


def test_bad_arguments_are_refused_with_the_valid_choices():
    with pytest.raises(UnknownChoiceError, match="procedural"):
        make_subject(0, anatomy="brainweb", shape=SMALL)
    with pytest.raises(UnknownChoiceError, match="FLAIR"):
        make_subject(0, contrasts=("T1", "DWI"), shape=SMALL)
    with pytest.raises(UnknownChoiceError, match="3.0"):
        make_subject(0, field_strength=1.5, shape=SMALL)
    with pytest.raises(UnknownChoiceError, match="FLAIR"):
        make_subject(0, snr={"DWI": 20.0}, shape=SMALL, **PROC)
    for bad in [dict(shape=(32, 32)), dict(shape=(32, 32, 2)), dict(snr=0.0), dict(snr=-3), dict(snr={"T2": 0}),
                dict(spacing=(1.0, 0.0, 1.0)), dict(seed=-1), dict(seed=1.5), dict(gibbs=0.0), dict(gibbs=1.5)]:
        kw = dict(shape=SMALL, **PROC)
        kw.update(bad)
        seed = kw.pop("seed", 0)
        with pytest.raises(ValueError):
            make_subject(seed, **kw)


def test_signal_equations_and_flair_nulls_csf():
    # spin echo, by hand: PD (1 - e^-TR/T1) e^-TE/T2
    assert signal("SE", 0.7, 1000.0, 80.0, tr=500.0, te=10.0) == pytest.approx(
        0.7 * (1 - np.exp(-0.5)) * np.exp(-10 / 80), rel=1e-6)
    flair = SEQUENCES[3.0]["FLAIR"]
    t1, t2, pd, _ = TISSUES[3.0]["csf"]
    s_csf = signal("IR", pd, t1, t2, tr=flair["TR"], te=flair["TE"], ti=flair["TI"])
    t1, t2, pd, _ = TISSUES[3.0]["wm"]
    s_wm = signal("IR", pd, t1, t2, tr=flair["TR"], te=flair["TE"], ti=flair["TI"])
    assert s_csf < 1e-3 * s_wm
    assert float(signal("IR", 1.0, 300.0, 100.0, tr=9000.0, te=0.0, ti=2500.0, signed=True)) > 0
    assert float(signal("IR", 1.0, 9000.0, 100.0, tr=9000.0, te=0.0, ti=100.0, signed=True)) < 0


def test_docstrings_state_the_values_the_code_uses():
    doc = relaxation.__doc__
    for t, (t1, t2, pd, gd) in TISSUES[3.0].items():
        if t == "air":
            continue
        assert f"{t1:g}" in doc and f"{t2:g}" in doc and f"{pd:.2f}" in doc, t
    for name, (t1, t2, pd) in relaxation.NUCLEI.items():
        assert f"{t1:g} / {t2:g} / {pd:.2f}" in doc, name
    for region, (_, f1, f2, f3) in relaxation.REGION_FACTORS.items():
        assert f"{f1:.2f}   {f2:.2f}   {f3:.2f}" in doc, region
    for source in ("Wansapura", "Stanisz", "Bojorquez", "Gelman", "Mirowitz", "Zhao", "Lu H"):
        assert source in doc
    doc = acquisition.__doc__
    for c, seq in SEQUENCES[3.0].items():
        assert f"{seq['TR']:g}" in doc and f"{seq['TE']:g}" in doc
    assert f"{SEQUENCES[3.0]['FLAIR']['TI']:.0f}" in doc


def test_assign_splits_is_deterministic_and_keeps_a_test_subject():
    for n in range(1, 13):
        s = assign_splits(n, seed=3)
        assert s == assign_splits(n, seed=3) and len(s) == n
        assert set(s) <= {"train", "val", "test"}
        if n >= 3:
            assert s.count("test") >= 1 and s.count("train") >= 1 and s.count("val") >= 1
    ten = assign_splits(10, seed=0)
    assert (ten.count("train"), ten.count("val"), ten.count("test")) == (6, 2, 2)
    assert assign_splits(10, seed=0) != assign_splits(10, seed=1)
    assert assign_splits(4, split=(1, 0, 0)) == ["train"] * 4
    with pytest.raises(ValueError, match="split"):
        assign_splits(4, split=(0.5, 0.5))
    with pytest.raises(ValueError, match="split"):
        assign_splits(4, split=(0, 0, 0))


def test_write_phantom_dataset_writes_files_manifest_and_splits(tmp_path):
    calls = []
    manifest = write_phantom_dataset(tmp_path / "ds", 4, seed=21, shape=(16, 16, 8), tumour=0.5, **PROC,
                                     progress=lambda d, t: calls.append((d, t)))
    assert manifest == tmp_path / "ds" / "dataset.json"
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    ds = load_dataset(manifest)
    ds.check_files()
    assert [s.id for s in ds.subjects] == ["sub-000", "sub-001", "sub-002", "sub-003"]
    assert sorted(ds.modalities) == sorted(CONTRASTS)
    assert [s.split for s in ds.subjects] == assign_splits(4, seed=21)
    assert len(ds.split("test")) == 1 and len(ds.split("train")) == 2
    sub = ds.subjects[1]
    expected = make_subject(subject_seed(21, 1), shape=(16, 16, 8), subject_id="sub-001", **PROC,
                            tumour=has_tumour(subject_seed(21, 1), 0.5))
    for c in CONTRASTS:
        vol = io.load(ds.path(sub.images[c]))
        assert vol.modality == c
        assert np.allclose(vol.affine, expected.images[c].affine)
        assert np.array_equal(vol.data, expected.images[c].data)
    labels = io.load(ds.path(sub.labels))
    assert np.array_equal(labels.data, expected.labels.data)
    assert np.array_equal(io.load(ds.path(sub.mask)).data, expected.brain_mask.data)
    params = json.loads((tmp_path / "ds" / "sub-001" / "phantom.json").read_text())
    assert params["seed"] == subject_seed(21, 1) and params["split"] == sub.split

    # subject k is the same whatever the number of subjects
    write_phantom_dataset(tmp_path / "two", 2, seed=21, shape=(16, 16, 8), contrasts=("T2",), tumour=0.5, **PROC)
    a = io.load(tmp_path / "two" / "sub-001" / "T2.nii.gz").data
    b = io.load(tmp_path / "ds" / "sub-001" / "T2.nii.gz").data
    assert np.array_equal(a, b)


def test_write_phantom_dataset_dicom_series_match_the_nifti(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    write_phantom_dataset(tmp_path, 2, seed=1, shape=(12, 14, 4), dicom=True, tumour=True, **PROC)
    studies = []
    for sid in ("sub-000", "sub-001"):
        series = set()
        study = set()
        for number, c in enumerate(CONTRASTS, start=1):
            files = sorted((tmp_path / sid / "dicom" / c).glob("*.dcm"))
            assert len(files) == 4
            ds = pydicom.dcmread(files[0])
            assert ds.PatientID == sid and int(ds.SeriesNumber) == number
            series.add(ds.SeriesInstanceUID)
            study.add(ds.StudyInstanceUID)
            vol = io.load(tmp_path / sid / "dicom" / c)
            ref = io.load(tmp_path / sid / f"{c}.nii.gz")
            assert np.allclose(vol.affine, ref.affine, atol=1e-3)
            assert np.allclose(vol.data, ref.data, atol=2e-4 * ref.data.max())
        assert len(series) == 5 and len(study) == 1
        studies.append(study.pop())
    assert studies[0] != studies[1]
