"""Shared fixtures: real data location and small analytic inputs.

Tests reach the shared real data (meshes, scans, garments, image sets) only through the
``shared_data`` fixture. The data set lives beside the checkout, in ``../shared/data``; without
it the tests that need it fail, saying where it was expected, rather than skip quietly.
"""

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_FOLDERS = ("meshes", "multiview", "open_surfaces", "point_clouds")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data set (``../shared/data`` next to the checkout)."""
    missing = [name for name in DATA_FOLDERS if not (DATA / name).is_dir()]
    if missing:
        pytest.fail(f"the shared test data is missing: expected {DATA} with the folders "
                    f"{', '.join(DATA_FOLDERS)} (missing: {', '.join(missing)}). Put the data set there, "
                    f"or link it: ln -s /path/to/shared/data {DATA}", pytrace=False)
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
