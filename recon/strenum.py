"""``StrEnum``: enumerations whose members are their string values.

The project's shared names (pipeline stages, input error codes, job statuses) are ``StrEnum``s:
a member compares equal to its value, is stored as it in SQL and JSON and formats as it, so a
row read back as a plain ``str`` matches the member it was written from. The project needs
Python 3.11, which has the class; this module is the one place the shared enums import it from.
"""

from __future__ import annotations

import enum

StrEnum = enum.StrEnum


__all__ = ["StrEnum"]
