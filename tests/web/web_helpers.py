"""Helpers of the browser tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
# As root Chromium needs --no-sandbox; SwiftShader gives WebGL without a GPU.
BROWSER_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
BACKGROUND = (0x2A, 0x2E, 0x35)
"""The viewer's clear colour (``BACKGROUND`` in service/web/app/viewer.js)."""

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's Chromium is not installed at /usr/bin/chromium (scripts/setup.sh installs it when run as root)")


def open_page(page, path: str = "/") -> None:
    """Load the page and wait until its method list is filled from ``GET /v1/methods``."""
    page.goto(path)
    page.wait_for_selector("#method option", state="attached")


def drawn_fraction(png: bytes, background=BACKGROUND, tolerance: int = 24, margin: int = 8) -> float:
    """Fraction of pixels of a canvas screenshot that differ from the background colour.

    ``margin`` pixels are cut from each side: the viewport's rounded corners and a fractional
    last row show the page behind the canvas.
    """
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)[margin:-margin, margin:-margin]
    return float((np.abs(rgb - np.array(background)).max(axis=2) > tolerance).mean())
