"""Image checks before any model call: gen_common.image_check (shared with ingest's
test-image-validation route, so both go through the same SSRF guard and threshold)."""

from __future__ import annotations

from gen_common.image_check import ImageCheck, ImageChecker, ImagesUnreachable, enforce_threshold

__all__ = ["ImageCheck", "ImageChecker", "ImagesUnreachable", "enforce_threshold"]
