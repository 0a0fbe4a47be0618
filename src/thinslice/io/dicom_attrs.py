"""The attributes of a derived DICOM CT series: what is copied from the source series,
what is new, and the references back to the source images.

Used by :mod:`thinslice.io.dicom_write`; nothing here touches the disk. Copying is an
allowlist (:data:`COPIED_KEYWORDS`): patient, study, scanner and reconstruction
attributes come from the source slice nearest to each new slice; private tags,
acquisition times, pixel encoding and per-instance attributes are never copied, so
nothing in the new series claims what is not true of it.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from collections.abc import Sequence as SequenceOf

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from thinslice import __version__

UidMaker = Callable[[str], str]  # role ("series", "instance 3", ...) -> UID

#: Added to the source's SeriesNumber (the series is numbered 1000 when it has none).
SERIES_NUMBER_OFFSET = 1000

#: Copied from the source slice nearest to each output slice (an allowlist: private
#: tags, acquisition timing, pixel encoding, per-instance attributes and positions of the
#: acquired slice such as ReconstructionTargetCenterPatient are left out).
COPIED_KEYWORDS: tuple[str, ...] = (
    # patient
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientBirthDate",
    "PatientBirthTime", "PatientSex", "OtherPatientIDsSequence", "OtherPatientNames", "EthnicGroup", "PatientComments",
    "PatientSpeciesDescription", "PatientBreedDescription", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified", "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSiteID", "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialTimePointID",
    "ClinicalTrialTimePointDescription",
    # study
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord", "ProcedureCodeSequence",
    "ReferencedStudySequence", "AdmittingDiagnosesDescription", "PatientAge", "PatientSize", "PatientWeight",
    "PregnancyStatus", "AdditionalPatientHistory",
    # series and equipment (the scanner's)
    "BodyPartExamined", "PatientPosition", "ProtocolName", "RequestAttributesSequence", "Manufacturer",
    "ManufacturerModelName", "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "DeviceSerialNumber", "SoftwareVersions", "SpatialResolution", "DateOfLastCalibration", "TimeOfLastCalibration",
    "PositionReferenceIndicator",
    # contrast
    "ContrastBolusAgent", "ContrastBolusAgentSequence", "ContrastBolusRoute", "ContrastBolusVolume",
    "ContrastBolusStartTime", "ContrastBolusStopTime", "ContrastBolusTotalDose", "ContrastFlowRate",
    "ContrastFlowDuration", "ContrastBolusIngredient", "ContrastBolusIngredientConcentration",
    # CT acquisition and reconstruction
    "KVP", "ScanOptions", "DataCollectionDiameter", "ReconstructionDiameter", "DistanceSourceToDetector",
    "DistanceSourceToPatient", "GantryDetectorTilt", "TableHeight", "RotationDirection", "ExposureTime",
    "XRayTubeCurrent", "Exposure", "ExposureInuAs", "FilterType", "GeneratorPower", "FocalSpots", "ConvolutionKernel",
    "ReconstructionAlgorithm", "RevolutionTime", "SingleCollimationWidth", "TotalCollimationWidth", "TableSpeed",
    "TableFeedPerRotation", "SpiralPitchFactor", "ExposureModulationType", "EstimatedDoseSaving", "CTDIvol",
    "CTDIPhantomTypeCodeSequence", "IrradiationEventUID",
    # display and provenance of the pixels
    "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction", "LossyImageCompression",
    "LossyImageCompressionRatio", "LossyImageCompressionMethod", "BurnedInAnnotation",
)  # fmt: skip


#: What names the source's study to its archive (its order, accession number, study ID):
#: not carried into a new study (``--new-study``), which it would claim to be.
STUDY_IDENTITY: tuple[str, ...] = (
    "StudyID", "AccessionNumber", "IssuerOfAccessionNumberSequence", "ReferencedStudySequence",
    "RequestAttributesSequence",
)  # fmt: skip

#: Type 2 attributes of the CT Image IOD among the copied ones: a derived series must have
#: them, empty when the source lacks them (an archive may refuse a series without them).
TYPE2_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",  # patient
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",  # general study
    "PatientPosition", "PositionReferenceIndicator",  # general series (2C, always so for CT), frame of reference
    "Manufacturer", "KVP",  # general equipment, CT image
)  # fmt: skip


def ds_text(value: float) -> str:
    """A decimal string of at most 16 characters (DICOM DS), ``0`` for rounding noise."""
    value = float(value)
    return "0" if abs(value) < 1e-10 else format_number_as_ds(value)


def series_dataset(
    first: Dataset,
    source_uid: str,
    sources: SequenceOf[Dataset],
    *,
    description: str,
    derivation: str,
    uid: UidMaker,
    new_study: bool,
) -> tuple[Dataset, bool]:
    """The attributes shared by every slice of the new series.

    Args:
        first: the first source header (study, frame of reference, series number).
        source_uid: the source's SeriesInstanceUID ("" when it has none).
        sources: all source headers, for the ReferencedSeriesSequence.

    Returns:
        The dataset, and whether the FrameOfReferenceUID had to be made up (the source
        had none).
    """
    now = dt.datetime.now()
    ds = Dataset()
    charset = _charset(first, description, derivation)
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    study = str(first.get("StudyInstanceUID") or "").strip()
    ds.StudyInstanceUID = uid("study") if new_study else study
    ds.SeriesInstanceUID = uid("series")
    frame = str(first.get("FrameOfReferenceUID") or "").strip()
    ds.FrameOfReferenceUID = frame or uid("frame of reference")
    number = first.get("SeriesNumber")
    ds.SeriesNumber = (int(number) if number not in (None, "") else 0) + SERIES_NUMBER_OFFSET
    ds.SeriesDescription = description
    ds.DerivationDescription = derivation
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.AcquisitionNumber = None  # type 2: this series was computed, not acquired
    ds.ContributingEquipmentSequence = Sequence([_thinslice_equipment(derivation, now)])
    references = _referenced_series(source_uid, sources)
    if references is not None and new_study and study:
        other = Dataset()
        other.StudyInstanceUID = study
        other.ReferencedSeriesSequence = Sequence([references])
        ds.StudiesContainingOtherReferencedInstancesSequence = Sequence([other])
    elif references is not None and not new_study:
        ds.ReferencedSeriesSequence = Sequence([references])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleType = "HU"
    return ds, not frame


def slice_dataset(
    series: Dataset,
    nearest: Dataset,
    sources: SequenceOf[Dataset],
    *,
    position: np.ndarray,
    orientation: SequenceOf[float],
    pixel_spacing: tuple[float, float],
    slice_location: float,
    shape: tuple[int, int],
    index: int,
    sop: str,
) -> Dataset:
    """One slice's dataset (without slice thickness, rescale and pixels).

    Args:
        series: from :func:`series_dataset`.
        nearest: the source header nearest to this slice (scanner attributes come from it).
        sources: the source headers this slice was computed from (SourceImageSequence).
        position: ImagePositionPatient, mm (LPS).
        orientation: ImageOrientationPatient (row cosines, then column cosines).
        pixel_spacing: (between rows, between columns), mm.
        slice_location: position along the slice normal, mm.
        shape: (Rows, Columns).
        index: 0-based; InstanceNumber is ``index + 1``.
        sop: the new SOPInstanceUID.
    """
    ds = Dataset()
    new_study = series.StudyInstanceUID != str(nearest.get("StudyInstanceUID") or "").strip()
    for keyword in COPIED_KEYWORDS:
        if keyword in nearest and not (new_study and keyword in STUDY_IDENTITY):
            ds[keyword] = copy.deepcopy(nearest[keyword])
    for keyword in TYPE2_KEYWORDS:
        if keyword not in ds:
            setattr(ds, keyword, None)  # present and empty: unknown
    ds.update(series)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = sop
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [ds_text(v) for v in position]
    ds.ImageOrientationPatient = [ds_text(v) for v in orientation]
    ds.PixelSpacing = [ds_text(v) for v in pixel_spacing]
    ds.SliceLocation = ds_text(slice_location)
    ds.Rows, ds.Columns = (int(n) for n in shape)
    items = [item for item in map(_sop_reference, sources) if item is not None]
    for item in items:
        item.PurposeOfReferenceCodeSequence = Sequence([_code("121322", "Source image for image processing operation")])
    if items:
        ds.SourceImageSequence = Sequence(items)
    return ds


def _charset(first: Dataset, *texts: str) -> str | list[str] | None:
    """The source's character set (None: the default, ASCII), or UTF-8 when our own
    text needs more than ASCII (copied text is re-encoded on writing)."""
    value = first.get("SpecificCharacterSet")
    if not all(text.isascii() for text in texts):
        return "ISO_IR 192"
    if not value:
        return None
    return str(value) if isinstance(value, str) else [str(v) for v in value]


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _thinslice_equipment(derivation: str, now: dt.datetime) -> Dataset:
    item = Dataset()
    item.Manufacturer = item.ManufacturerModelName = "thinslice"
    item.SoftwareVersions = __version__
    item.ContributionDateTime = now.strftime("%Y%m%d%H%M%S")
    item.ContributionDescription = derivation
    item.PurposeOfReferenceCodeSequence = Sequence([_code("109102", "Processing Equipment")])
    return item


def sop_uid(ds: Dataset) -> str:
    """A slice's SOPInstanceUID, or its file meta's MediaStorageSOPInstanceUID where the
    dataset's own is empty (as anonymising exports leave it); "" when neither is there."""
    meta = getattr(ds, "file_meta", None)
    stored = meta.get("MediaStorageSOPInstanceUID") if meta is not None else None
    return str(ds.get("SOPInstanceUID") or stored or "").strip()


def _sop_reference(ds: Dataset) -> Dataset | None:
    """A ReferencedSOPClass/InstanceUID item for a source slice (None without a UID)."""
    sop = sop_uid(ds)
    if not sop:
        return None
    item = Dataset()
    meta = getattr(ds, "file_meta", None)
    meta_class = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    item.ReferencedSOPClassUID = ds.get("SOPClassUID") or meta_class or CTImageStorage
    item.ReferencedSOPInstanceUID = sop
    if "ReferencedFrameNumber" in ds:  # a frame of a multi-frame source (multiframe.frame_headers)
        item.ReferencedFrameNumber = ds.ReferencedFrameNumber
    return item


def _referenced_series(source_uid: str, sources: SequenceOf[Dataset]) -> Dataset | None:
    """One ReferencedSeriesSequence item listing the source's instances (None without UIDs)."""
    instances: dict[str, Dataset] = {}  # each instance once: a multi-frame file is one
    for ref in map(_sop_reference, sources):
        if ref is not None and ref.ReferencedSOPInstanceUID not in instances:
            if "ReferencedFrameNumber" in ref:
                del ref.ReferencedFrameNumber
            instances[ref.ReferencedSOPInstanceUID] = ref
    if not source_uid or not instances:
        return None
    item = Dataset()
    item.SeriesInstanceUID = source_uid
    item.ReferencedInstanceSequence = Sequence(instances.values())
    return item
