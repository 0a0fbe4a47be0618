"""Multi-frame (enhanced) CT: one DICOM file holding the whole series as frames.

Modern scanners export Enhanced CT Image Storage: the geometry of each frame sits in the
functional groups (``PerFrameFunctionalGroupsSequence``, with shared values in
``SharedFunctionalGroupsSequence``). :func:`expand_frames` turns such a file into one
header per frame, carrying the tags the series reader checks (position, orientation,
pixel spacing, size, modality), so frames are sorted and checked exactly like the files
of a classic series; the pixels are then read once by pydicom and rescaled to HU.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from thinslice.errors import InputError

_Slices = list[tuple[Path, Dataset]]
#: What a frame's functional groups say that a classic CT slice says at its top level.
_FRAME_VALUES = (
    ("PlanePositionSequence", "ImagePositionPatient"), ("PlaneOrientationSequence", "ImageOrientationPatient"),
    ("PixelMeasuresSequence", "PixelSpacing"), ("PixelMeasuresSequence", "SliceThickness"),
    ("PixelValueTransformationSequence", "RescaleSlope"), ("PixelValueTransformationSequence", "RescaleIntercept"),
)  # fmt: skip
_GROUPS = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "PixelData", "NumberOfFrames")


def expand_frames(group: _Slices) -> tuple[_Slices, Callable[[_Slices], np.ndarray] | None]:
    """One header per frame when ``group`` is a single multi-frame file, and the function
    that reads the HU of the frames in a given order; ``group`` unchanged (and None) otherwise.

    Raises:
        InputError: the file has several frames but no per-frame positions.
    """
    if len(group) != 1 or int(group[0][1].get("NumberOfFrames") or 1) <= 1:
        return group, None
    path, ds = group[0]
    count = int(ds.NumberOfFrames)
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is None or len(per) != count:
        raise InputError(
            f"{path.name} holds {count} frames without per-frame positions (PerFrameFunctionalGroupsSequence); "
            "export the series as one file per slice"
        )
    frames: _Slices = [(path, frame) for frame in frame_headers(ds)]
    index = {id(frame): i for i, (_, frame) in enumerate(frames)}
    rescale = [(float(f.get("RescaleSlope", 1) or 1), float(f.get("RescaleIntercept", 0) or 0)) for _, f in frames]

    def read(ordered: _Slices) -> np.ndarray:
        """``(frames, rows, cols)`` HU in the order of ``ordered`` (float64)."""
        try:
            pixels = pydicom.dcmread(path).pixel_array
        except Exception as err:  # noqa: BLE001 - pydicom raises many types for bad pixel data
            raise InputError(f"cannot read the pixels of {path} ({err})") from err
        if pixels.shape[0] != count:
            raise InputError(f"{path.name} declares {count} frames but holds {pixels.shape[0]}")
        out = np.empty(pixels.shape, dtype=np.float64)
        for k, (_, frame) in enumerate(ordered):
            i = index[id(frame)]
            slope, intercept = rescale[i]
            out[k] = pixels[i] * slope + intercept
        return out

    return frames, read


def frame_headers(ds: Dataset) -> list[Dataset]:
    """One header per frame of the multi-frame header ``ds`` (with per-frame positions):
    its own attributes (patient, study, series, equipment), less the functional groups,
    with the frame's position, orientation, pixel spacing, thickness and rescale set as a
    classic CT slice has them, InstanceNumber the frame's number and ReferencedFrameNumber
    too, so that a derived series can cite the frame it was computed from."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    top = [elem for elem in ds if elem.keyword not in _GROUPS]
    frames = []
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        frame = Dataset()
        for elem in top:  # shared, never changed: slice headers copy what they take
            frame.add(elem)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:  # the stored UIDs, where an anonymiser emptied the dataset's
            frame.file_meta = meta
        for sequence, keyword in _FRAME_VALUES:
            value = _group_value(item, shared, sequence, keyword)
            if value is not None:
                setattr(frame, keyword, value)
        frame.InstanceNumber = frame.ReferencedFrameNumber = i + 1
        frames.append(frame)
    return frames


def _group_value(item: Dataset, shared: Dataset, sequence: str, keyword: str) -> Any:
    """``keyword`` of the first item of ``sequence``, per frame first, then shared; None if absent."""
    for source in (item, shared):
        seq = source.get(sequence)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None
