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

from .dicom_write_common import _common, _ds_str, _image_pixel, _mr_parameters, _voi_window

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
    _image_pixel(ds, ny, nx, ctx.signed)
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


def _item(**elements):
    """A pydicom Dataset holding these elements, given by keyword."""
    from pydicom.dataset import Dataset

    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _one(**elements):
    """A sequence of one item holding these elements (a functional group, a code item), given by keyword."""
    from pydicom.sequence import Sequence

    return Sequence([_item(**elements)])


def _dimension_organisation(ds) -> None:
    """One 3D dimension organisation: frames indexed by Stack ID and In-Stack Position Number."""
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    dim_uid = generate_uid()
    ds.DimensionOrganizationSequence = _one(DimensionOrganizationUID=dim_uid)
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = Sequence([
        _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=pointer, FunctionalGroupPointer=0x00209111,
              DimensionDescriptionLabel=label)
        for pointer, label in ((0x00209056, "Stack ID"), (0x00209057, "In-Stack Position Number"))
    ])


def _shared_groups(ds, ctx, params: dict, nx: int, ny: int):
    """The one item of SharedFunctionalGroupsSequence: every functional group that is the same for all frames."""
    shared = _item()
    _geometry_and_value_groups(shared, ctx)
    _frame_type_group(shared, ds)
    _timing_and_echo_groups(shared, params)
    _modifier_groups(shared, params, nx, ny)
    _coil_and_anatomy_groups(shared)
    return shared


def _geometry_and_value_groups(shared, ctx) -> None:
    """Pixel measures, plane orientation, pixel value transformation (rescale) and VOI window."""
    from pydicom.sequence import Sequence

    g = ctx.geom
    shared.PixelMeasuresSequence = _one(PixelSpacing=[_ds_str(v) for v in g["pixel_spacing"]],
                                        SliceThickness=_ds_str(g["slice_spacing"]),
                                        SpacingBetweenSlices=_ds_str(g["slice_spacing"]))
    shared.PlaneOrientationSequence = _one(ImageOrientationPatient=[_ds_str(v) for v in g["iop"]])
    shared.PixelValueTransformationSequence = _one(RescaleIntercept=_ds_str(ctx.intercept),
                                                   RescaleSlope=_ds_str(ctx.slope), RescaleType="US")
    voi = _item()
    _voi_window(voi, *ctx.value_range)
    shared.FrameVOILUTSequence = Sequence([voi])


def _frame_type_group(shared, ds) -> None:
    """MR Image Frame Type, repeating the image-level type attributes of ``ds``."""
    repeated = ("PixelPresentation", "VolumetricProperties", "VolumeBasedCalculationTechnique",
                "ComplexImageComponent", "AcquisitionContrast")
    shared.MRImageFrameTypeSequence = _one(FrameType=list(ds.ImageType), **{kw: getattr(ds, kw) for kw in repeated})


def _timing_and_echo_groups(shared, params: dict) -> None:
    """MR Timing and Related Parameters (with operating mode and SAR) and MR Echo."""
    shared.MRTimingAndRelatedParametersSequence = _one(
        RepetitionTime=float(params["RepetitionTime"]), FlipAngle=float(params["FlipAngle"]),
        EchoTrainLength=1, RFEchoTrainLength=1, GradientEchoTrainLength=0,
        GradientOutputType="DB_DT", GradientOutput=0.0,
        OperatingModeSequence=_one(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL"),
        SpecificAbsorptionRateSequence=_one(SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                                            SpecificAbsorptionRateValue=0.0),
    )
    shared.MREchoSequence = _one(EffectiveEchoTime=float(params["EchoTime"]))


def _modifier_groups(shared, params: dict, nx: int, ny: int) -> None:
    """MR Modifier (inversion recovery and the like), MR FOV/Geometry and MR Imaging Modifier."""
    inversion = {"InversionTimes": [float(params["InversionTime"])]} if "InversionTime" in params else {}
    shared.MRModifierSequence = _one(
        InversionRecovery="YES" if inversion else "NO", **inversion,
        FlowCompensation="NONE", Spoiling="NONE", T2Preparation="NO", SpectrallySelectedExcitation="NONE",
        SpatialPresaturation="NONE", PartialFourier="NO", ParallelAcquisition="NO",
    )
    shared.MRFOVGeometrySequence = _one(
        InPlanePhaseEncodingDirection="ROW", MRAcquisitionFrequencyEncodingSteps=nx,
        MRAcquisitionPhaseEncodingStepsInPlane=ny, PercentSampling=100.0, PercentPhaseFieldOfView=100.0,
    )
    shared.MRImagingModifierSequence = _one(
        PixelBandwidth=200.0, MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE",
        TransmitterFrequency=42.577478 * float(params["MagneticFieldStrength"]),
    )


def _coil_and_anatomy_groups(shared) -> None:
    """MR Receive Coil, MR Transmit Coil, MR Averages and Frame Anatomy (the brain)."""
    shared.MRReceiveCoilSequence = _one(ReceiveCoilName="HEAD", ReceiveCoilManufacturerName="",
                                        ReceiveCoilType="VOLUME", QuadratureReceiveCoil="NO")
    shared.MRTransmitCoilSequence = _one(TransmitCoilName="BODY", TransmitCoilManufacturerName="",
                                         TransmitCoilType="BODY")
    shared.MRAveragesSequence = _one(NumberOfAverages=1.0)
    brain = _one(CodeValue="12738006", CodingSchemeDesignator="SCT", CodeMeaning="Brain")
    shared.FrameAnatomySequence = _one(AnatomicRegionSequence=brain, FrameLaterality="U")


def _per_frame_groups(ds, g: dict, nz: int):
    """PerFrameFunctionalGroupsSequence: frame content (stack position, times) and plane position of each slice."""
    from pydicom.sequence import Sequence

    return Sequence([
        _item(
            FrameContentSequence=_one(
                StackID="1", InStackPositionNumber=k + 1, DimensionIndexValues=[1, k + 1],
                FrameAcquisitionDateTime=ds.AcquisitionDateTime, FrameReferenceDateTime=ds.AcquisitionDateTime,
                FrameAcquisitionDuration=0.0,
            ),
            PlanePositionSequence=_one(ImagePositionPatient=[_ds_str(v) for v in g["positions"][k]]),
        )
        for k in range(nz)
    ])
