"""``StrEnum``: enumerations whose members are their string values.

The project's shared names (pipeline stages, input error codes, job statuses) are ``StrEnum``s:
a member compares equal to its value, is stored as it in SQL and JSON and formats as it, so a
row read back as a plain ``str`` matches the member it was written from. Python 3.11 has the
class; this module gives 3.10 the same behaviour.
"""

from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 11):
    StrEnum = enum.StrEnum
else:  # pragma: no cover - exercised on Python 3.10 only

    class StrEnum(str, enum.Enum):
        """A ``str`` whose ``str()`` and ``format()`` are its value (as ``enum.StrEnum`` in 3.11)."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last_values: list) -> str:
            return name.lower()


__all__ = ["StrEnum"]
