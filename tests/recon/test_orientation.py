"""Global normal orientation: outward on closed shapes, thin parts included; open vs closed."""

from __future__ import annotations

import numpy as np
import pytest

from recon.orientation import orient_normals, pca_normals, point_areas, winding_contributions
from tests.support.analytic import box_surface_samples, unit_sphere_points


def test_winding_number_of_a_sphere_is_one_inside_and_zero_outside():
    pts = unit_sphere_points(20000)
    q = np.array([[0, 0, 0], [0.5, 0.2, 0.1], [2, 0, 0], [0, -3, 1.0]])
    w = winding_contributions(q, pts, pts, point_areas(pts), np.zeros(len(pts), dtype=int), 1)[:, 0]
    assert w == pytest.approx([1, 1, 0, 0], abs=0.02)
    # Per group: two hemispheres, each half of the inside's 1.
    groups = (pts[:, 2] > 0).astype(int)
    per = winding_contributions(q[:1], pts, pts, point_areas(pts), groups, 2)
    assert per[0] == pytest.approx([0.5, 0.5], abs=0.02)


def test_sphere_normals_point_outward():
    pts = unit_sphere_points(5000)
    o = orient_normals(pts)
    assert (np.einsum("ij,ij->i", o.normals, pts) > 0).all()
    assert o.openness < 0.1


def test_thin_plate_gets_opposite_normals_on_its_two_faces():
    # Thickness 0.05 against a sample spacing of about 0.014: 15 neighbours reach across the
    # plate, and so do the spanning tree's shortcuts; a propagation along them would give both
    # faces the same normal.
    pts, truth = box_surface_samples((1.0, 1.0, 0.05), 12000)
    o = orient_normals(pts)
    faces = (np.abs(pts[:, :2]).max(axis=1) < 0.45) & (np.abs(truth[:, 2]) == 1)
    agree = np.einsum("ij,ij->i", o.normals, truth)[faces]
    assert (agree > 0).mean() > 0.99


def test_flipping_the_input_normals_changes_nothing():
    pts, truth = box_surface_samples((1.0, 0.6, 0.3), 8000, seed=1)
    normals = pca_normals(pts)
    signs = np.where(np.random.default_rng(5).random(len(pts)) < 0.5, -1.0, 1.0)
    o = orient_normals(pts, normals * signs[:, None])
    assert (np.einsum("ij,ij->i", o.normals, truth) > 0).mean() > 0.995


def test_repeated_points_are_one_dipole_and_do_not_crash_libigl():
    """libigl's octree crashes the process on identical points; merged, the winding number is the
    same as that of the points written once (and orientation runs)."""
    from recon.orientation import fast_winding_number

    pts = unit_sphere_points(3000)
    areas = point_areas(pts)
    q = np.array([[0, 0, 0], [0.3, -0.2, 0.1], [1.5, 0, 0]])
    once = fast_winding_number(pts, pts, areas, q)
    thrice = fast_winding_number(np.repeat(pts, 3, axis=0), np.repeat(pts, 3, axis=0), np.repeat(areas / 3, 3), q)
    assert thrice == pytest.approx(once, abs=1e-9)
    o = orient_normals(np.repeat(pts[:200], 4, axis=0))
    assert np.isfinite(o.normals).all()
