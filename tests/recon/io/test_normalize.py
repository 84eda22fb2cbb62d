"""recon.io.normalize: unit-cube mapping round trip and bounds; subsampling."""

from __future__ import annotations

import numpy as np
import pytest

from recon.io import Normalization, PointCloud, normalize, subsample


def make_cloud(n=1000, seed=0, colors=True):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-1, 1, size=(n, 3)) * [50.0, 5.0, 20.0] + [1000.0, -200.0, 3.0]
    nrm = rng.normal(size=(n, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    rgb = rng.integers(0, 256, size=(n, 3)) if colors else None
    return PointCloud(pts, nrm, rgb)


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_normalize_bounds_and_round_trip(margin):
    pc = make_cloud()
    unit, norm = normalize(pc, margin=margin)
    lo, hi = unit.points.min(axis=0), unit.points.max(axis=0)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)  # bbox center -> origin
    assert np.abs(unit.points).max() == pytest.approx(1.0 - margin, rel=1e-12)
    assert np.abs(unit.points).max() <= 1.0
    # the largest axis (x, half-extent ~50) spans exactly +-(1 - margin)
    assert hi[0] == pytest.approx(1.0 - margin) and lo[0] == pytest.approx(-(1.0 - margin))
    np.testing.assert_allclose(norm.from_unit(unit.points), pc.points, rtol=0, atol=1e-9)
    np.testing.assert_allclose(norm.to_unit(pc.points), unit.points)
    np.testing.assert_array_equal(unit.normals, pc.normals)
    np.testing.assert_array_equal(unit.colors, pc.colors)
    assert norm.scale == pytest.approx(float((pc.points.max(0) - pc.points.min(0)).max()) / 2
                                       / (1.0 - margin))  # fmt: skip


def test_normalization_is_immutable_and_comparable():
    norm = Normalization(center=[1.0, 2.0, 3.0], scale=2.0)
    with pytest.raises(AttributeError):
        norm.scale = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        norm.center[0] = 5.0
    assert norm == Normalization(center=np.array([1.0, 2.0, 3.0]), scale=2.0)
    assert norm != Normalization(center=[1.0, 2.0, 3.0], scale=2.5)
    np.testing.assert_allclose(norm.to_unit([[3.0, 2.0, 3.0]]), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(norm.from_unit([[0.0, -1.0, 0.5]]), [[1.0, 0.0, 4.0]])
    with pytest.raises(ValueError):
        Normalization(center=[0.0, 0.0, 0.0], scale=0.0)


def test_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="margin"):
        normalize(make_cloud(), margin=1.0)
    with pytest.raises(ValueError, match="empty"):
        normalize(PointCloud(np.zeros((0, 3))))
    with pytest.raises(ValueError, match="zero extent"):
        normalize(PointCloud(np.ones((10, 3))))


def test_subsample():
    pc = make_cloud(n=1000)
    sub = subsample(pc, 100, seed=7)
    assert len(sub) == 100
    # rows come from the original, without repetition, with normals and colors kept aligned
    idx = [int(np.flatnonzero((pc.points == p).all(axis=1))[0]) for p in sub.points]
    assert len(set(idx)) == 100 and idx == sorted(idx)
    np.testing.assert_array_equal(sub.normals, pc.normals[idx])
    np.testing.assert_array_equal(sub.colors, pc.colors[idx])
    np.testing.assert_array_equal(subsample(pc, 100, seed=7).points, sub.points)
    assert not np.array_equal(subsample(pc, 100, seed=8).points, sub.points)
    assert subsample(pc, 5000, seed=0) is pc  # fewer points than asked: keep all
    no_extras = PointCloud(pc.points)
    assert subsample(no_extras, 10).normals is None
    with pytest.raises(ValueError):
        subsample(pc, 0)
