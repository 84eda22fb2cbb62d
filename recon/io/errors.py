"""Errors and warnings raised while reading user-supplied point clouds.

Every problem caused by the *content* of an input file is reported as ``InputError`` with a
stable machine-readable ``code`` (the HTTP API maps it to a 422 problem+json response whose
``type`` ends with the code), and a message that names the file and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

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
"""All points identical, or all on one line: no surface can be fitted."""
NOT_FOUND = "not_found"
"""The path does not exist or is not a regular file."""

CODES = frozenset(
    {
        MALFORMED_FILE,
        UNSUPPORTED_FORMAT,
        TRUNCATED,
        TOO_FEW_POINTS,
        TOO_MANY_POINTS,
        NON_FINITE,
        DEGENERATE,
        NOT_FOUND,
    }
)


class InputError(ValueError):
    """A user-supplied input file is unusable.

    Attributes: ``code`` (one of ``CODES``), ``detail`` (the message without the file name) and
    ``path`` (the full path as given, or None). ``str(err)`` is ``"<file name>: <detail>"``;
    only the base name is shown so that server-side temporary paths do not leak into API
    responses.
    """

    def __init__(
        self, detail: str, *, code: str, path: Optional[Union[str, Path]] = None
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown InputError code {code!r}")
        self.code = code
        self.detail = detail
        self.path = None if path is None else str(path)
        prefix = f"{Path(self.path).name}: " if self.path is not None else ""
        super().__init__(prefix + detail)

    def with_path(self, path: Union[str, Path]) -> "InputError":
        """The same error attributed to ``path`` (used when a helper raised without one)."""
        if self.path is not None:
            return self
        err = InputError(self.detail, code=self.code, path=path)
        err.__cause__ = self.__cause__
        return err


class InputWarning(UserWarning):
    """A recoverable problem with an input file (e.g. unusable normals that were dropped)."""
