"""The Enhanced MR Image Storage dataset the plain DICOM writer makes (``write_dicom_series(..., enhanced=True)``).

:func:`_enhanced_dataset` holds every slice of the volume as a frame of one file. It is assembled from:

* the top-level attributes (:func:`_enhanced_image`: image type, acquisition contrast, the MR Pulse Sequence
  module) and the dimension organisation (one stack, ordered by in-stack position);
* the shared functional groups (:func:`_shared_groups`): geometry and pixel value groups the same for every
  frame, the frame type, MR timing, echo, modifiers, field of view, coils, averages and anatomy;
* the per-frame functional groups (:func:`_per_frame_groups`): frame content and plane position of each slice.

The attributes shared with the single-frame datasets come from :mod:`.dicom_write_common`.
"""

from __future__ import annotations

import numpy as np

from .dicom_write_common import _common, _ds_str, _mr_parameters, _pixel_module, _window

_ACQ_CONTRAST = {"T1": "T1", "T1c": "T1", "T2": "T2", "PD": "PROTON_DENSITY", "FLAIR": "FLUID_ATTENUATED"}


def _enhanced_dataset(ctx, stored: np.ndarray, sop_uid: str):
    """An Enhanced MR Image Storage dataset holding every slice as a frame."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage

    nx, ny, nz = stored.shape
    params = _mr_parameters(ctx)
    ds = Dataset()
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = sop_uid
    _common(ds, ctx)
    _enhanced_image(ds, ctx, params, nz)
    _pixel_module(ds, ctx, ny, nx)
    _pulse_sequence(ds, params)
    _dimension_organisation(ds)
    ds.SharedFunctionalGroupsSequence = Sequence([_shared_groups(ds, ctx, params, nx, ny)])
    ds.PerFrameFunctionalGroupsSequence = _per_frame_groups(ds, ctx.geom, nz)
    ds.PixelData = b""  # set in _save
    return ds


def _enhanced_image(ds, ctx, params: dict, nz: int) -> None:
    """The Enhanced MR Image and multi-frame attributes of the top level."""
    from pydicom.sequence import Sequence

    from ..volume import normalise_modality

    ds.DeviceSerialNumber = "0"
    value1 = "DERIVED" if ctx.synthetic else "ORIGINAL"
    ds.ImageType = [value1, "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.AcquisitionDateTime = ctx.now.strftime("%Y%m%d%H%M%S")
    ds.AcquisitionDuration = 0.0
    ds.ContentQualification = "RESEARCH"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = _ds_str(params["MagneticFieldStrength"])
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = "written by napari-medtrans"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    contrast = _ACQ_CONTRAST.get(normalise_modality(ctx.label) or "", "UNKNOWN")
    ds.AcquisitionContrast = contrast
    ds.AcquisitionContextSequence = Sequence([])
    ds.NumberOfFrames = nz


def _pulse_sequence(ds, params: dict) -> None:
    """The MR Pulse Sequence module (required for ORIGINAL images)."""
    default_name = "IR" if "IR" in str(params["ScanningSequence"]) else "SE"
    ds.PulseSequenceName = str(params.get("SequenceName", default_name))[:16]
    ds.MRAcquisitionType = "2D"
    ds.EchoPulseSequence = "SPIN"
    ds.MultipleSpinEcho = "NO"
    ds.MultiPlanarExcitation = "YES"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.NumberOfKSpaceTrajectories = 1


def _dimension_organisation(ds) -> None:
    """One 3D dimension organisation: frames indexed by Stack ID and In-Stack Position Number."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    dim_uid = generate_uid()
    org = Dataset()
    org.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = Sequence([org])
    ds.DimensionOrganizationType = "3D"
    idx = []
    for pointer, label in ((0x00209056, "Stack ID"), (0x00209057, "In-Stack Position Number")):
        d = Dataset()
        d.DimensionOrganizationUID = dim_uid
        d.DimensionIndexPointer = pointer
        d.FunctionalGroupPointer = 0x00209111
        d.DimensionDescriptionLabel = label
        idx.append(d)
    ds.DimensionIndexSequence = Sequence(idx)


def _shared_groups(ds, ctx, params: dict, nx: int, ny: int):
    """The one item of SharedFunctionalGroupsSequence: every functional group that is the same for all frames."""
    from pydicom.dataset import Dataset

    shared = Dataset()
    _geometry_and_value_groups(shared, ctx)
    _frame_type_group(shared, ds)
    _timing_and_echo_groups(shared, params)
    _modifier_groups(shared, params, nx, ny)
    _coil_and_anatomy_groups(shared)
    return shared


def _geometry_and_value_groups(shared, ctx) -> None:
    """Pixel measures, plane orientation, pixel value transformation (rescale) and VOI window."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    g = ctx.geom
    pm = Dataset()
    pm.PixelSpacing = [_ds_str(v) for v in g["pixel_spacing"]]
    pm.SliceThickness = _ds_str(g["slice_spacing"])
    pm.SpacingBetweenSlices = _ds_str(g["slice_spacing"])
    shared.PixelMeasuresSequence = Sequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = [_ds_str(v) for v in g["iop"]]
    shared.PlaneOrientationSequence = Sequence([po])
    pvt = Dataset()
    pvt.RescaleIntercept = _ds_str(ctx.intercept)
    pvt.RescaleSlope = _ds_str(ctx.slope)
    pvt.RescaleType = "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    voi = Dataset()
    _window(voi, ctx)
    shared.FrameVOILUTSequence = Sequence([voi])


def _frame_type_group(shared, ds) -> None:
    """MR Image Frame Type, repeating the image-level type attributes of ``ds``."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ft = Dataset()
    ft.FrameType = list(ds.ImageType)
    for kw in ("PixelPresentation", "VolumetricProperties", "VolumeBasedCalculationTechnique",
               "ComplexImageComponent", "AcquisitionContrast"):
        setattr(ft, kw, getattr(ds, kw))
    shared.MRImageFrameTypeSequence = Sequence([ft])


def _timing_and_echo_groups(shared, params: dict) -> None:
    """MR Timing and Related Parameters (with operating mode and SAR) and MR Echo."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    timing = Dataset()
    timing.RepetitionTime = float(params["RepetitionTime"])
    timing.FlipAngle = float(params["FlipAngle"])
    timing.EchoTrainLength = 1
    timing.RFEchoTrainLength = 1
    timing.GradientEchoTrainLength = 0
    timing.GradientOutputType = "DB_DT"
    timing.GradientOutput = 0.0
    opmode = Dataset()
    opmode.OperatingModeType = "STATIC FIELD"
    opmode.OperatingMode = "IEC_NORMAL"
    timing.OperatingModeSequence = Sequence([opmode])
    sar = Dataset()
    sar.SpecificAbsorptionRateDefinition = "IEC_WHOLE_BODY"
    sar.SpecificAbsorptionRateValue = 0.0
    timing.SpecificAbsorptionRateSequence = Sequence([sar])
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    echo = Dataset()
    echo.EffectiveEchoTime = float(params["EchoTime"])
    shared.MREchoSequence = Sequence([echo])


def _modifier_groups(shared, params: dict, nx: int, ny: int) -> None:
    """MR Modifier (inversion recovery and the like), MR FOV/Geometry and MR Imaging Modifier."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    mod = Dataset()
    mod.InversionRecovery = "YES" if "InversionTime" in params else "NO"
    if "InversionTime" in params:
        mod.InversionTimes = [float(params["InversionTime"])]
    mod.FlowCompensation = "NONE"
    mod.Spoiling = "NONE"
    mod.T2Preparation = "NO"
    mod.SpectrallySelectedExcitation = "NONE"
    mod.SpatialPresaturation = "NONE"
    mod.PartialFourier = "NO"
    mod.ParallelAcquisition = "NO"
    shared.MRModifierSequence = Sequence([mod])
    fov = Dataset()
    fov.InPlanePhaseEncodingDirection = "ROW"
    fov.MRAcquisitionFrequencyEncodingSteps = nx
    fov.MRAcquisitionPhaseEncodingStepsInPlane = ny
    fov.PercentSampling = 100.0
    fov.PercentPhaseFieldOfView = 100.0
    shared.MRFOVGeometrySequence = Sequence([fov])
    imod = Dataset()
    imod.PixelBandwidth = 200.0
    imod.MagnetizationTransfer = "NONE"
    imod.BloodSignalNulling = "NO"
    imod.Tagging = "NONE"
    imod.TransmitterFrequency = 42.577478 * float(params["MagneticFieldStrength"])
    shared.MRImagingModifierSequence = Sequence([imod])


def _coil_and_anatomy_groups(shared) -> None:
    """MR Receive Coil, MR Transmit Coil, MR Averages and Frame Anatomy (the brain)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    rx = Dataset()
    rx.ReceiveCoilName = "HEAD"
    rx.ReceiveCoilManufacturerName = ""
    rx.ReceiveCoilType = "VOLUME"
    rx.QuadratureReceiveCoil = "NO"
    shared.MRReceiveCoilSequence = Sequence([rx])
    tx = Dataset()
    tx.TransmitCoilName = "BODY"
    tx.TransmitCoilManufacturerName = ""
    tx.TransmitCoilType = "BODY"
    shared.MRTransmitCoilSequence = Sequence([tx])
    avg = Dataset()
    avg.NumberOfAverages = 1.0
    shared.MRAveragesSequence = Sequence([avg])
    anat = Dataset()
    region = Dataset()
    region.CodeValue = "12738006"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Brain"
    anat.AnatomicRegionSequence = Sequence([region])
    anat.FrameLaterality = "U"
    shared.FrameAnatomySequence = Sequence([anat])


def _per_frame_groups(ds, g: dict, nz: int):
    """PerFrameFunctionalGroupsSequence: frame content (stack position, times) and plane position of each slice."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    per_frame = []
    for k in range(nz):
        f = Dataset()
        fc = Dataset()
        fc.StackID = "1"
        fc.InStackPositionNumber = k + 1
        fc.DimensionIndexValues = [1, k + 1]
        fc.FrameAcquisitionDateTime = ds.AcquisitionDateTime
        fc.FrameReferenceDateTime = ds.AcquisitionDateTime
        fc.FrameAcquisitionDuration = 0.0
        f.FrameContentSequence = Sequence([fc])
        pp = Dataset()
        pp.ImagePositionPatient = [_ds_str(v) for v in g["positions"][k]]
        f.PlanePositionSequence = Sequence([pp])
        per_frame.append(f)
    return Sequence(per_frame)
