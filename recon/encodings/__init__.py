"""Positional encodings for neural fields: multi-resolution hash grid and frequency encoding.

A frozen config's ``build()`` returns an :class:`~recon.encodings.base.Encoding`::

    enc = HashGridConfig(log2_hashmap_size=17).build()
    feats, jac = enc.forward_with_jacobian(x)   # x: (n, 3) in [-1, 1]^3

Importing the package registers the optional tiny-cuda-nn backend of the hash grid
(``recon.encodings.tcnn``; tiny-cuda-nn itself is imported only when that backend is built).
"""

from __future__ import annotations

from recon.encodings import tcnn  # noqa: F401 - registers the hash grid's 'tcnn' backend
from recon.encodings.base import Encoding
from recon.encodings.frequency import FrequencyConfig, FrequencyEncoding
from recon.encodings.hash_grid import HashGrid, HashGridConfig, LevelLayout, encode_torch

__all__ = [
    "Encoding",
    "FrequencyConfig",
    "FrequencyEncoding",
    "HashGrid",
    "HashGridConfig",
    "LevelLayout",
    "encode_torch",
]
