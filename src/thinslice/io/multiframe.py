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
_COPIED = ("Modality", "Rows", "Columns", "SeriesDescription", "SeriesInstanceUID", "SamplesPerPixel",
           "PhotometricInterpretation", "BitsAllocated", "GantryDetectorTilt")  # fmt: skip


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
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    frames: _Slices = []
    index: dict[int, int] = {}
    rescale: list[tuple[float, float]] = []
    for i, item in enumerate(per):
        frame = Dataset()
        for keyword in _COPIED:
            if keyword in ds:
                setattr(frame, keyword, ds.get(keyword))
        frame.ImagePositionPatient = _group_value(item, shared, "PlanePositionSequence", "ImagePositionPatient")
        frame.ImageOrientationPatient = _group_value(
            item, shared, "PlaneOrientationSequence", "ImageOrientationPatient"
        ) or ds.get("ImageOrientationPatient")
        frame.PixelSpacing = _group_value(item, shared, "PixelMeasuresSequence", "PixelSpacing") or ds.get(
            "PixelSpacing"
        )
        thickness = _group_value(item, shared, "PixelMeasuresSequence", "SliceThickness")
        if thickness is not None:
            frame.SliceThickness = thickness
        frame.InstanceNumber = i + 1
        slope = _group_value(item, shared, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_value(item, shared, "PixelValueTransformationSequence", "RescaleIntercept")
        rescale.append((
            float(slope if slope is not None else ds.get("RescaleSlope", 1) or 1),
            float(intercept if intercept is not None else ds.get("RescaleIntercept", 0) or 0),
        ))  # fmt: skip
        index[id(frame)] = i
        frames.append((path, frame))

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


def _group_value(item: Dataset, shared: Dataset, sequence: str, keyword: str) -> Any:
    """``keyword`` of the first item of ``sequence``, per frame first, then shared; None if absent."""
    for source in (item, shared):
        seq = source.get(sequence)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None
