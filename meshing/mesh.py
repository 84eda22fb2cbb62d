"""The ``Mesh`` dataclass (plain numpy arrays) and operations on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh.

    vertices: (V, 3) float64 positions; faces: (F, 3) int64 vertex indices, counter-clockwise
    seen from outside (normals point to the positive side of the SDF); vertex_normals:
    optional (V, 3) float64 unit normals; vertex_colors: optional (V, 3) uint8 RGB.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_normals: Optional[np.ndarray] = None
    vertex_colors: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def is_empty(self) -> bool:
        return self.n_faces == 0
