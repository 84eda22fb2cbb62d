"""Positional encodings for neural fields: multi-resolution hash grid and frequency encoding.

``ENCODINGS`` maps a name to a frozen config class whose ``build()`` returns an
:class:`~recon.encodings.base.Encoding`::

    enc = ENCODINGS["hash_grid"](log2_hashmap_size=17).build()
    feats, jac = enc.forward_with_jacobian(x)   # x: (n, 3) in [-1, 1]^3
"""

from __future__ import annotations

from typing import Any

from recon.encodings.base import Encoding
from recon.encodings.frequency import FrequencyConfig, FrequencyEncoding
from recon.encodings.hash_grid import HashGrid, HashGridConfig, LevelLayout, encode_torch
from recon.registry import register

ENCODINGS: dict[str, Any] = {}
"""Encoding name -> config class (``Config(**kwargs).build()`` gives the module)."""

register(ENCODINGS, "hash_grid")(HashGridConfig)
register(ENCODINGS, "frequency")(FrequencyConfig)

__all__ = [
    "ENCODINGS",
    "Encoding",
    "FrequencyConfig",
    "FrequencyEncoding",
    "HashGrid",
    "HashGridConfig",
    "LevelLayout",
    "encode_torch",
]
