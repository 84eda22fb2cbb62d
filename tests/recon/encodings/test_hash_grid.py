"""Hash-grid encoding: C++ kernel vs PyTorch reference, derivatives, levels, clamping.

Tolerances: values compare at atol 1e-5 (float32, features O(1)); Jacobians, which scale with the
level resolution (up to N/2 per unit x), compare at rtol 1e-5 plus atol 1e-5 * max|jac|; float64
checks use gradcheck's defaults or 1e-6 relative.
A C++ build failure makes the cpp tests fail (not skip): the kernel is a hard requirement here.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from recon.encodings import (
    FrequencyConfig,
    HashGridConfig,
    LevelLayout,
    _ext,
    encode_torch,
)
from recon.encodings.hash_grid import HashGrid

# Small grid with both kinds of level: 17^3 = 4913 > 2^12 rows -> levels >= 1 are hashed.
SMALL = {"n_levels": 6, "log2_hashmap_size": 12, "base_resolution": 8, "finest_resolution": 256}
# For gradcheck: resolutions 2, 4 (dense) and 8 (hashed into 2^7 rows).
TINY = {"n_levels": 3, "log2_hashmap_size": 7, "base_resolution": 2, "finest_resolution": 8}


@pytest.fixture(scope="module")
def ext():
    return _ext.load(strict=True)  # raises (test error) if the kernel cannot be built


def make_grid(backend: str, dtype=torch.float32, seed: int = 0, **kw) -> HashGrid:
    torch.manual_seed(seed)
    cfg = HashGridConfig(**{**SMALL, "init_scale": 1.0, "backend": backend, **kw})
    return cfg.build().to(dtype)


def twin_grids(dtype=torch.float32, **kw) -> tuple[HashGrid, HashGrid]:
    """Same table, one per backend."""
    cpp, ref = make_grid("cpp", dtype, **kw), make_grid("torch", dtype, **kw)
    ref.load_state_dict(cpp.state_dict())
    return cpp, ref


def rand_points(n: int, seed: int = 1, lo: float = -1.0, hi: float = 1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g, dtype=dtype) * (hi - lo) + lo).contiguous()


def away_from_cell_faces(x: torch.Tensor, layout: LevelLayout, margin: float) -> torch.Tensor:
    """Keep points whose fractional cell coordinate is in [margin, 1 - margin] at every level."""
    u = (x + 1) * 0.5
    keep = torch.ones(len(x), dtype=torch.bool)
    for r in layout.resolutions:
        frac = torch.frac(u * r)
        keep &= ((frac > margin) & (frac < 1 - margin)).all(dim=1)
    return x[keep]


def assert_jac_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.detach().abs().max()))


def test_layout_levels_dense_then_hashed():
    layout = LevelLayout.from_config(HashGridConfig())
    assert layout.resolutions[0] == 16 and layout.resolutions[-1] == 2048
    ratios = [b / a for a, b in zip(layout.resolutions, layout.resolutions[1:])]
    assert all(1.3 < q < 1.45 for q in ratios)  # geometric, b = 128^(1/15) ~ 1.38
    hashed = [layout.hashed(lv) for lv in range(16)]
    assert hashed == sorted(hashed) and not hashed[0] and hashed[-1]
    for lv, (r, s) in enumerate(zip(layout.resolutions, layout.sizes)):
        assert s == min((r + 1) ** 3, 2**19)
        assert layout.offsets[lv] == sum(layout.sizes[:lv])
    grid = HashGrid(HashGridConfig(log2_hashmap_size=12))
    assert grid.table.shape == (grid.layout.n_rows, 2) and grid.table.dtype == torch.float32
    assert grid.out_dim == 32 and grid.n_levels == 16


def test_tcnn_backend_is_registered_and_fails_clearly_without_cuda():
    from recon.encodings.hash_grid import ACCELERATED
    from recon.encodings.tcnn import TcnnHashGrid

    assert ACCELERATED["tcnn"].build is TcnnHashGrid
    with pytest.raises(ValueError, match="config.build"):
        HashGrid(HashGridConfig(**SMALL, backend="tcnn"))
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: test_tcnn_backend_matches_interface covers the backend")
    assert not ACCELERATED["tcnn"].usable()
    with pytest.raises((ImportError, RuntimeError), match="tiny-cuda-nn"):
        HashGridConfig(**SMALL, backend="tcnn").build()


def test_backend_resolution(ext):
    assert make_grid("cpp").backend == "cpp"
    assert make_grid("auto").backend == "cpp"  # no CUDA here, kernel builds
    assert make_grid("torch").backend == "torch"


@pytest.mark.parametrize("log2,finest", [(12, 256), (19, 64)])  # mixed / all dense
def test_cpp_matches_reference_values_and_jacobian(ext, log2, finest):
    cpp, ref = twin_grids(log2_hashmap_size=log2, finest_resolution=finest)
    n_hashed = sum(cpp.layout.hashed(lv) for lv in range(6))
    assert n_hashed == (5 if log2 == 12 else 0)
    x = rand_points(3000)
    torch.testing.assert_close(cpp(x), ref(x), rtol=0, atol=1e-5)
    e_c, j_c = cpp.forward_with_jacobian(x)
    e_r, j_r = ref.forward_with_jacobian(x)
    torch.testing.assert_close(e_c, e_r, rtol=0, atol=1e-5)
    assert_jac_close(j_c, j_r)
    assert j_c.shape == (3000, 12, 3)


def test_cpp_matches_reference_gradients(ext):
    cpp, ref = twin_grids()
    x = rand_points(2000, seed=3)
    g = torch.Generator().manual_seed(4)
    w_enc = torch.randn(2000, 12, generator=g)
    w_jac = torch.randn(2000, 12, 3, generator=g) * 1e-2
    grads = []
    for grid in (cpp, ref):
        xg = x.clone().requires_grad_(True)
        enc, jac = grid.forward_with_jacobian(xg)
        loss = (enc * w_enc).sum() + (jac * w_jac).sum()
        grid.zero_grad()
        loss.backward()
        # grad_x from the enc term only: the C++ backward does not propagate d jac / d x.
        (gx,) = torch.autograd.grad((grid(xg) * w_enc).sum(), xg)
        grads.append((grid.table.grad.clone(), gx))
    (gt_c, gx_c), (gt_r, gx_r) = grads
    torch.testing.assert_close(gt_c, gt_r, rtol=1e-5, atol=1e-5 * float(gt_r.abs().max()))
    torch.testing.assert_close(gx_c, gx_r, rtol=1e-5, atol=1e-5 * float(gx_r.abs().max()))


def test_cpp_enc_only_and_jac_only_losses(ext):
    """Either output of forward_with_jacobian may be unused by the loss."""
    cpp, ref = twin_grids()
    x = rand_points(500, seed=5)
    for pick in (0, 1):
        got = []
        for grid in (cpp, ref):
            grid.zero_grad()
            grid.forward_with_jacobian(x)[pick].square().sum().backward()
            got.append(grid.table.grad.clone())
        torch.testing.assert_close(got[0], got[1], rtol=1e-5, atol=1e-5 * float(got[1].abs().max()))


def test_reference_gradcheck_float64():
    grid = make_grid("torch", torch.float64, **TINY)
    assert grid.layout.hashed(2) and not grid.layout.hashed(1)
    x = away_from_cell_faces(rand_points(200, seed=6, dtype=torch.float64), grid.layout, 0.01)[:8]
    x.requires_grad_(True)

    def fn(x, table):
        return encode_torch(x, table, grid.layout, 3, with_jac=True)

    table = grid.table.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x, table))


def test_cpp_gradcheck_float64(ext):
    """The kernel is templated on dtype, so gradcheck can test its hand-written backward."""
    grid = make_grid("cpp", torch.float64, **TINY)
    x = away_from_cell_faces(rand_points(200, seed=7, dtype=torch.float64), grid.layout, 0.01)[:8]
    x.requires_grad_(True)
    table = grid.table.detach().clone().requires_grad_(True)
    from recon.encodings.hash_grid import _CppEncode, _CppEncodeWithJacobian

    assert torch.autograd.gradcheck(lambda x, t: _CppEncode.apply(x, t, grid.layout, 3), (x, table))
    # With the Jacobian output: table only (d jac / d x is intentionally not implemented).
    xd = x.detach()
    def fn(t):
        return _CppEncodeWithJacobian.apply(xd, t, grid.layout, 3)
    assert torch.autograd.gradcheck(fn, (table,))


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_jacobian_matches_finite_differences(ext, backend):
    grid = make_grid(backend, torch.float64, finest_resolution=64)
    h = 1e-5  # h * N / 2 << margin: the stencil stays inside one cell at every level
    x = away_from_cell_faces(rand_points(400, seed=8, dtype=torch.float64), grid.layout, 0.01)
    x = x[:100]
    _, jac = grid.forward_with_jacobian(x)
    with torch.no_grad():
        for d in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[d] = h
            fd = (grid(x + e) - grid(x - e)) / (2 * h)
            torch.testing.assert_close(jac[..., d].detach(), fd, rtol=1e-6, atol=1e-6)


def test_jacobian_equals_autograd_of_reference():
    grid = make_grid("torch", torch.float64)
    x = rand_points(50, seed=9, dtype=torch.float64).requires_grad_(True)
    _, jac = grid.forward_with_jacobian(x)
    auto = torch.autograd.functional.jacobian(lambda p: grid(p).sum(0), x)  # (out, n, 3)
    torch.testing.assert_close(jac.detach(), auto.permute(1, 0, 2), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_inactive_levels_are_zero(ext, backend):
    grid = make_grid(backend)
    grid.set_active_levels(2)
    assert grid.n_active_levels == 2
    x = rand_points(300, seed=10).requires_grad_(True)
    enc, jac = grid.forward_with_jacobian(x)
    assert enc[:, 4:].abs().max() == 0 and jac[:, 4:].abs().max() == 0
    assert enc[:, :4].abs().min() > 0
    (enc.square().sum() + jac.square().sum()).backward()
    start = grid.layout.offsets[2]
    assert grid.table.grad[start:].abs().max() == 0
    assert grid.table.grad[:start].abs().max() > 0
    grid.set_active_levels(0)
    assert grid(x).abs().max() == 0
    grid.set_active_levels(99)
    assert grid.n_active_levels == grid.n_levels


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_points_outside_the_cube_are_clamped(ext, backend):
    grid = make_grid(backend)
    x = rand_points(400, seed=11, lo=-2.0, hi=2.0)
    enc, jac = grid.forward_with_jacobian(x)
    enc_c, jac_c = grid.forward_with_jacobian(x.clamp(-1, 1))
    torch.testing.assert_close(enc, enc_c, rtol=0, atol=0)
    outside = (x.abs() > 1)[:, None, :].expand_as(jac)
    assert jac[outside].abs().max() == 0  # clamped axes have zero derivative
    assert_jac_close(jac[~outside], jac_c[~outside])
    corners = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [1.0, -1.0, 1.0]])
    assert torch.isfinite(grid(corners)).all()


def test_batched_shapes_and_dtype_cast(ext):
    cpp, ref = twin_grids()
    x = rand_points(24, seed=12).reshape(2, 4, 3, 3).transpose(1, 2)  # non-contiguous (..., 3)
    enc, jac = cpp.forward_with_jacobian(x)
    assert enc.shape == (2, 3, 4, 12) and jac.shape == (2, 3, 4, 12, 3)
    torch.testing.assert_close(enc, ref(x), rtol=0, atol=1e-5)
    x64 = x.double().requires_grad_(True)
    cpp(x64).sum().backward()
    assert x64.grad is not None and x64.grad.dtype == torch.float64
    assert cpp(torch.empty(0, 3)).shape == (0, 12)


def test_falls_back_to_torch_when_kernel_missing(monkeypatch):
    monkeypatch.setattr(_ext, "_module", None)
    monkeypatch.setattr(_ext, "_error", "simulated build failure")
    grid = make_grid("cpp")
    assert grid.backend == "torch"
    x = rand_points(10)
    assert grid(x).shape == (10, 12)
    with pytest.raises(RuntimeError, match="simulated"):
        _ext.load(strict=True)


def test_build_failure_warns_once(monkeypatch):
    monkeypatch.setattr(_ext, "_module", None)
    monkeypatch.setattr(_ext, "_error", None)
    monkeypatch.setattr(_ext, "_compile", lambda: (None, "CalledProcessError: simulated"))
    with pytest.warns(RuntimeWarning, match="simulated"):
        assert _ext.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        assert _ext.load() is None
    assert "simulated" in _ext.error()


def test_build_entry_point_exits_zero(ext):
    cmd = [sys.executable, "-m", "recon.encodings.build"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ready" in proc.stdout and _ext.NAME in proc.stdout


def test_frequency_encoding_jacobian():
    enc_mod = FrequencyConfig(n_frequencies=4).build()
    assert enc_mod.out_dim == 3 + 24
    x = rand_points(20, seed=13, lo=-0.99, hi=0.99, dtype=torch.float64)
    enc, jac = enc_mod.forward_with_jacobian(x)
    assert enc.shape == (20, 27) and jac.shape == (20, 27, 3)
    auto = torch.autograd.functional.jacobian(lambda p: enc_mod(p).sum(0), x)
    torch.testing.assert_close(jac, auto.permute(1, 0, 2))
    enc_mod.set_active_levels(1)
    assert enc_mod(x)[:, 9:].abs().max() == 0


@pytest.mark.cuda
def test_tcnn_backend_matches_interface():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("tinycudann")
    grid = HashGridConfig(**SMALL, backend="tcnn").build()
    x = rand_points(64).cuda()
    enc, jac = grid.to("cuda").forward_with_jacobian(x)
    assert enc.shape == (64, 12) and jac.shape == (64, 12, 3)
