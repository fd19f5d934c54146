"""Synthetic DICOM for tests and benchmarks: a CT series and an ultrasound cine.

No real patient is behind any of it. The headers are real enough for a
de-identifier and a viewer to have work to do (names, IDs, dates, an
institution, positions, pixel spacing, rescale, windows), and the pixels look
like a body rather than noise so that window/level visibly changes a picture:

* :func:`ct_series` writes ``slices`` axial CT images (int16 stored values,
  rescale intercept -1024, 0.7 mm pixels, 1.25 mm apart): air, an elliptic
  trunk of soft tissue, two lungs that grow and shrink along the series, a
  spine, and a little noise, all in Hounsfield units.
* :func:`us_cine` writes one multi-frame 8-bit ultrasound image whose bright
  structure moves from frame to frame (a cine to play), with a frame time.

Generated with numpy and pydicom only; a 300 x 512 x 512 series takes a few
seconds and 150 MB.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

__all__ = ["CT_IMAGE_STORAGE", "US_MULTIFRAME_STORAGE", "ct_series", "ct_slice", "us_cine"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
#: rescale intercept of the CT: stored value = HU + 1024
CT_INTERCEPT = -1024


def _patient(ds: Dataset, seed: int) -> None:
    """Identifying attributes a de-identifier must remove or replace (all made up)."""
    ds.PatientName = f"SYNTHETIC^PATIENT{seed}"
    ds.PatientID = f"SYN-{seed:06d}"
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "O"
    ds.InstitutionName = "Synthetic General Hospital"
    ds.ReferringPhysicianName = "SYNTHETIC^DOCTOR"
    ds.AccessionNumber = f"ACC{seed:06d}"
    ds.StudyID = "1"


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _body(size: int, z: float, rng: np.random.Generator) -> np.ndarray:
    """One axial slice in HU; ``z`` in [0, 1] runs from the neck to the abdomen."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    trunk = (xx / 0.42) ** 2 + (yy / 0.30) ** 2 <= 1.0
    hu[trunk] = 40.0
    fat = trunk & ((xx / 0.40) ** 2 + (yy / 0.28) ** 2 > 1.0)
    hu[fat] = -90.0
    # lungs: largest in the middle of the series, gone at both ends
    lung_r = max(0.0, 0.16 * np.sin(np.pi * z))
    if lung_r > 0.01:
        for cx in (-0.17, 0.17):
            hu[((xx - cx) / (lung_r * 0.8)) ** 2 + (yy / lung_r) ** 2 <= 1.0] = -820.0
    # a vertebral body and a ring of cortical bone behind the trunk's centre
    spine = (xx / 0.05) ** 2 + ((yy - 0.19) / 0.05) ** 2
    hu[spine <= 1.0] = 300.0
    hu[(spine <= 1.0) & (spine > 0.6)] = 900.0
    # an organ that appears further down (liver-like, brighter than muscle)
    if z > 0.6:
        r = 0.2 * (z - 0.6) / 0.4 + 0.05
        hu[((xx + 0.12) / r) ** 2 + ((yy + 0.02) / (r * 0.7)) ** 2 <= 1.0] = 65.0
    hu[trunk] += rng.normal(0.0, 12.0, size=int(trunk.sum())).astype(np.float32)
    return hu


def ct_slice(
    index: int,
    *,
    slices: int = 300,
    size: int = 512,
    study_uid: str,
    series_uid: str,
    seed: int = 0,
    date: str = "20260301",
    frame_of_reference_uid: str | None = None,
) -> Dataset:
    """Slice ``index`` (0-based) of a synthetic axial CT series, as a pydicom Dataset."""
    rng = np.random.default_rng(seed * 100_003 + index)
    hu = _body(size, index / max(slices - 1, 1), rng)
    stored = np.clip(np.rint(hu) - CT_INTERCEPT, -32768, 32767).astype("<i2")
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(CT_IMAGE_STORAGE, sop_uid)
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_reference_uid or series_uid
    _patient(ds, seed)
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.StudyDescription = "CT CHEST ABDOMEN (synthetic)"
    ds.SeriesDescription = "Axial 1.25 mm"
    ds.Modality = "CT"
    ds.Manufacturer = "CPMS synthetic"
    ds.SeriesNumber = 2
    ds.InstanceNumber = index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BodyPartExamined = "CHEST"
    ds.KVP = "120"
    ds.SliceThickness = "1.25"
    ds.SpacingBetweenSlices = "1.25"
    ds.PixelSpacing = ["0.7", "0.7"]
    # the patient's head is at +z: instance 1 is the top slice
    ds.ImagePositionPatient = [-179.2, -179.2, -1.25 * index]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = str(-1.25 * index)
    ds.PatientPosition = "FFS"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = str(CT_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = stored.tobytes()
    return ds


def ct_series(
    folder: str | Path,
    *,
    slices: int = 300,
    size: int = 512,
    seed: int = 0,
) -> list[Path]:
    """Write a synthetic CT series into ``folder`` (one ``CT%04d.dcm`` per slice)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i in range(slices):
        ds = ct_slice(
            i,
            slices=slices,
            size=size,
            study_uid=study_uid,
            series_uid=series_uid,
            seed=seed,
            frame_of_reference_uid=frame_of_reference,
        )
        path = folder / f"CT{i + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def us_cine(
    path: str | Path,
    *,
    frames: int = 24,
    rows: int = 240,
    columns: int = 320,
    frame_time_ms: float = 40.0,
    seed: int = 0,
) -> Path:
    """Write a synthetic multi-frame ultrasound (8-bit MONOCHROME2) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cube = np.empty((frames, rows, columns), dtype=np.uint8)
    # a fan-shaped field of speckle with a bright wall that beats
    fan = (np.abs(xx - columns / 2) < (yy + 10) * 0.6) & (yy < rows - 5)
    for f in range(frames):
        phase = np.sin(2 * np.pi * f / frames)
        r = rows * (0.25 + 0.06 * phase)
        d = np.hypot(xx - columns / 2, yy - rows * 0.55)
        img = rng.gamma(2.0, 18.0, size=(rows, columns)).astype(np.float32)
        img += 150.0 * np.exp(-(((d - r) / 5.0) ** 2))
        img[~fan] = 0
        cube[f] = np.clip(img, 0, 255).astype(np.uint8)
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(US_MULTIFRAME_STORAGE, sop_uid)
    ds.SOPClassUID = US_MULTIFRAME_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    _patient(ds, seed)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = dt.date(2026, 3, 2).strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = "091000"
    ds.StudyDescription = "ECHO (synthetic)"
    ds.SeriesDescription = "Apical cine"
    ds.Modality = "US"
    ds.Manufacturer = "CPMS synthetic"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    ds.FrameTime = str(frame_time_ms)
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.CineRate = str(round(1000 / frame_time_ms))
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = cube.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
