"""Errors and warnings raised while reading user-supplied inputs (point clouds, image sets).

Every problem caused by the *content* of an input file is reported as ``InputError`` with a
stable machine-readable ``code`` (the HTTP API maps it to a 422 problem+json response whose
``type`` ends with the code), and a message that names the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

from recon.strenum import StrEnum


class InputErrorCode(StrEnum):
    """Why an input file is unusable; the API answers each with a 422 problem of this code."""

    MALFORMED_FILE = "malformed_file"
    """The file cannot be parsed: bad header, unparsable numbers, wrong array shape."""
    UNSUPPORTED_FORMAT = "unsupported_format"
    """Unknown suffix, or a variant of a known format that is not supported."""
    TRUNCATED = "truncated"
    """The header promises more data than the file holds."""
    TOO_FEW_POINTS = "too_few_points"
    """Fewer points than the caller's ``min_points``."""
    TOO_MANY_POINTS = "too_many_points"
    """More points than the caller's ``max_points`` (checked from headers before reading)."""
    NON_FINITE = "non_finite"
    """NaN or infinite coordinates."""
    DEGENERATE = "degenerate"
    """All points identical, or all on one line: no surface can be fitted; for image sets, cameras
    that do not look at a common region (or masks that carve everything away)."""
    NOT_FOUND = "not_found"
    """The path does not exist or is not a regular file (or a file a dataset refers to is missing)."""
    UNSAFE_ARCHIVE = "unsafe_archive"
    """A zip member would land outside the extraction folder (absolute path, ``..``), is a
    symlink or device, or repeats another member's name."""
    ARCHIVE_TOO_LARGE = "archive_too_large"
    """A zip has too many members, too many (declared or actual) uncompressed bytes, or a
    compression ratio typical of zip bombs."""
    IMAGE_TOO_LARGE = "image_too_large"
    """An image, or an image set as a whole, has more pixels than the loader accepts."""


# The loaders name the codes directly (``code=MALFORMED_FILE``): the members, not copies.
MALFORMED_FILE = InputErrorCode.MALFORMED_FILE
UNSUPPORTED_FORMAT = InputErrorCode.UNSUPPORTED_FORMAT
TRUNCATED = InputErrorCode.TRUNCATED
TOO_FEW_POINTS = InputErrorCode.TOO_FEW_POINTS
TOO_MANY_POINTS = InputErrorCode.TOO_MANY_POINTS
NON_FINITE = InputErrorCode.NON_FINITE
DEGENERATE = InputErrorCode.DEGENERATE
NOT_FOUND = InputErrorCode.NOT_FOUND
UNSAFE_ARCHIVE = InputErrorCode.UNSAFE_ARCHIVE
ARCHIVE_TOO_LARGE = InputErrorCode.ARCHIVE_TOO_LARGE
IMAGE_TOO_LARGE = InputErrorCode.IMAGE_TOO_LARGE

CODES = frozenset(InputErrorCode)


class InputError(ValueError):
    """A user-supplied input file is unusable.

    Attributes: ``code`` (an ``InputErrorCode``), ``detail`` (the message without the file name) and
    ``path`` (the full path as given, or None). ``str(err)`` is ``"<file name>: <detail>"``;
    only the base name is shown so that server-side temporary paths do not leak into API
    responses.
    """

    def __init__(
        self, detail: str, *, code: InputErrorCode | str, path: str | Path | None = None
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown InputError code {code!r}")
        self.code = InputErrorCode(code)
        self.detail = detail
        self.path = None if path is None else str(path)
        prefix = f"{Path(self.path).name}: " if self.path is not None else ""
        super().__init__(prefix + detail)

    def with_path(self, path: str | Path) -> InputError:
        """The same error attributed to ``path`` (used when a helper raised without one)."""
        if self.path is not None:
            return self
        err = InputError(self.detail, code=self.code, path=path)
        err.__cause__ = self.__cause__
        return err


class InputWarning(UserWarning):
    """A recoverable problem with an input file (e.g. unusable normals that were dropped)."""
