"""Imaging: de-identification and tile serving of whole-slide images.

* :mod:`cpms_hub.imaging.slide_deid` - Aperio SVS de-identification on import (label and
  macro removed, identifying TIFF tags and ImageDescription fields scrubbed, tiles kept
  byte for byte; TIFF 6.0 / BigTIFF, OpenSlide's Aperio format notes).
* :mod:`cpms_hub.imaging.slide_tiles` - Deep Zoom tiles read from an encrypted segmented
  blob: stored JPEG tiles pass through without decode, other levels are decoded, resized
  and cached under a byte budget.
* :mod:`cpms_hub.imaging.errors` - :class:`UnsupportedFormatError`.

Design rule: this package imports only :mod:`cpms_hub.domain`,
:mod:`cpms_hub.crypto.segmented`, the standard library and imaging libraries (tifffile,
imagecodecs, Pillow, numpy, openslide) - never the store or the service.
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
