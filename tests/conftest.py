"""Shared fixtures: real data location and small analytic inputs."""

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.exists():
        pytest.skip(f"shared test data not found at {DATA}")
    return DATA


def sphere_cloud(n: int = 3000, radius: float = 0.5, center=(0.0, 0.0, 0.0), seed: int = 0):
    """(n, 3) points on a sphere and their outward unit normals."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * radius + np.asarray(center), d


@pytest.fixture
def sphere_xyz(tmp_path) -> Path:
    """A 3000-point sphere (radius 2, centred at (10, -5, 3)) as an .xyz file, no normals."""
    pts, _ = sphere_cloud(3000, radius=2.0, center=(10.0, -5.0, 3.0))
    path = tmp_path / "sphere.xyz"
    np.savetxt(path, pts, fmt="%.6f")
    return path
