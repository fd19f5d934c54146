"""Imaging: de-identification, tiles and frames of whole-slide images and DICOM studies.

* :mod:`cpms_hub.imaging.slide_deid` - Aperio SVS de-identification on import (label and
  macro removed, identifying TIFF tags and ImageDescription fields scrubbed, tiles kept
  byte for byte; TIFF 6.0 / BigTIFF, OpenSlide's Aperio format notes).
* :mod:`cpms_hub.imaging.slide_tiles` - Deep Zoom tiles read from an encrypted segmented
  blob: stored JPEG tiles pass through without decode, other levels are decoded, resized
  and cached under a byte budget.
* :mod:`cpms_hub.imaging.deid` - DICOM de-identification by PS3.15 Annex E (Basic
  Profile, Retain Longitudinal Temporal Information with Modified Dates, Retain Patient
  Characteristics), driven by Table E.1-1 shipped as data; burned-in text risk.
* :mod:`cpms_hub.imaging.dicom` - reading DICOM with limits, decoding every supported
  transfer syntax to little-endian frames, thumbnails.
* :mod:`cpms_hub.imaging.dicom_import` - uploads (a file or a zip) to de-identified,
  storable instances, held ones, or per-file errors.
* :mod:`cpms_hub.imaging.errors` - :class:`UnsupportedFormatError`.

Design rule: this package imports only :mod:`cpms_hub.domain`,
:mod:`cpms_hub.crypto.segmented`, the standard library and imaging libraries (tifffile,
imagecodecs, Pillow, numpy, openslide, pydicom and its pylibjpeg decoders) - never the
store or the service.
"""

from __future__ import annotations

from .errors import UnsupportedFormatError
from .slide_deid import (
    MAX_SLIDE_SIDE,
    SlideImportReport,
    deidentify_svs,
    detect_slide_format,
    is_deidentified_directory,
)
from .slide_tiles import DEFAULT_CACHE_BYTES, DeepZoomLevel, SlideProperties, SlideTileSource

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "MAX_SLIDE_SIDE",
    "DeepZoomLevel",
    "SlideImportReport",
    "SlideProperties",
    "SlideTileSource",
    "UnsupportedFormatError",
    "deidentify_svs",
    "detect_slide_format",
    "is_deidentified_directory",
]
