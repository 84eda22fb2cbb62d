"""DiGS fitter: it converges on an analytic sphere, reports progress, cancels and resumes."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from recon.encodings.hash_grid import HashGridConfig
from recon.fields import HashSDFConfig, SirenSDFConfig
from recon.pointcloud import DigsConfig, fit_sdf
from recon.progress import Cancelled, CancelToken

RADIUS = 0.6


def sphere_points(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * RADIUS, d


SMALL = DigsConfig(
    field=HashSDFConfig(encoding=HashGridConfig(n_levels=6, log2_hashmap_size=14, base_resolution=8,
                                                finest_resolution=64), hidden_dim=32),
    steps=60, surface_batch=1024, near_batch=512, space_batch=512, divergence_batch=256, log_every=10,
)


def radial_error(field, n=2000):
    """Mean |f| on the true sphere and mean |f(x) - (|x| - R)| in a shell around it."""
    pts, dirs = sphere_points(n, seed=7)
    with torch.no_grad():
        on = field(torch.as_tensor(pts, dtype=torch.float32)).abs().mean().item()
        shell = dirs * np.random.default_rng(8).uniform(RADIUS - 0.15, RADIUS + 0.15, size=(n, 1))
        f = field(torch.as_tensor(shell, dtype=torch.float32)).numpy()
    return on, np.abs(f - (np.linalg.norm(shell, axis=1) - RADIUS)).mean()


def test_fit_sphere_unoriented_is_accurate_with_correct_sign():
    field = fit_sdf(sphere_points()[0], None, SMALL)
    on, shell = radial_error(field)
    assert on < 0.01  # surface within 1% of the cube's half-width
    assert shell < 0.03
    with torch.no_grad():
        assert field(torch.zeros(1, 3)).item() < 0  # inside is negative
        assert field(torch.full((1, 3), 0.9)).item() > 0


def test_fit_with_oriented_normals_uses_them():
    pts, nrm = sphere_points()
    field = fit_sdf(pts, nrm, SMALL)
    _, grad = field.forward_with_gradient(torch.as_tensor(pts[:500], dtype=torch.float32), create_graph=False)
    cos = torch.nn.functional.cosine_similarity(grad, torch.as_tensor(nrm[:500], dtype=torch.float32), dim=-1)
    assert cos.mean().item() > 0.98


def test_siren_field_fits_too():
    cfg = replace(SMALL, field=SirenSDFConfig(hidden_dim=64, n_hidden_layers=2), lr=1e-4, lr_final=1e-5, steps=80)
    field = fit_sdf(sphere_points()[0], None, cfg)
    on, _ = radial_error(field)
    assert on < 0.05


def test_progress_events_cover_all_steps():
    events = []
    fit_sdf(sphere_points(500)[0], None, replace(SMALL, steps=20, log_every=5), progress=events.append)
    assert [e.step for e in events] == [5, 10, 15, 20]
    assert all(e.stage == "fit" and e.total == 20 for e in events)
    assert {"surface", "eikonal", "total"} <= set(events[-1].losses)


def test_cancel_stops_the_fit():
    token = CancelToken()
    seen = []

    def on_progress(ev):
        seen.append(ev.step)
        if ev.step >= 10:
            token.cancel()

    with pytest.raises(Cancelled):
        fit_sdf(sphere_points(500)[0], None, replace(SMALL, steps=50, log_every=5), progress=on_progress, cancel=token)
    assert max(seen) == 10


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    pts = sphere_points(800)[0]
    cfg = replace(SMALL, steps=30, checkpoint_every=10, log_every=10)
    reference = fit_sdf(pts, None, cfg)

    ckpt = tmp_path / "fit.ckpt"
    token = CancelToken()
    with pytest.raises(Cancelled):
        fit_sdf(pts, None, cfg, checkpoint_path=ckpt, cancel=token,
                progress=lambda ev: token.cancel() if ev.step == 20 else None)
    assert ckpt.exists()
    resumed_from = []
    resumed = fit_sdf(pts, None, cfg, checkpoint_path=ckpt, progress=lambda ev: resumed_from.append(ev.step))
    assert resumed_from[0] == 30  # steps 1-20 were not redone
    x = torch.rand(256, 3) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(reference(x), resumed(x), atol=1e-4)


def test_checkpoint_of_other_config_is_ignored(tmp_path):
    pts = sphere_points(500)[0]
    ckpt = tmp_path / "fit.ckpt"
    token = CancelToken()
    with pytest.raises(Cancelled):
        fit_sdf(pts, None, replace(SMALL, steps=20, checkpoint_every=10), checkpoint_path=ckpt, cancel=token,
                progress=lambda ev: token.cancel() if ev.step == 10 else None)
    steps = []
    fit_sdf(pts, None, replace(SMALL, steps=20, checkpoint_every=10, seed=5), checkpoint_path=ckpt,
            progress=lambda ev: steps.append(ev.step))
    assert steps[0] == 10  # started from scratch


@pytest.mark.parametrize("bad, match", [
    (np.zeros((5, 3)), "n>=10"),
    (np.zeros((100, 2)), "shape"),
    (np.full((100, 3), np.nan), "finite"),
])
def test_bad_points_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        fit_sdf(bad, None, SMALL)


def test_fixed_seed_is_deterministic():
    pts = sphere_points(500)[0]
    cfg = replace(SMALL, steps=10)
    a, b = fit_sdf(pts, None, cfg), fit_sdf(pts, None, cfg)
    x = torch.rand(64, 3) * 2 - 1
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
