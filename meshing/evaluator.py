"""Chunked evaluation of a field given as a torch callable, for the extractors.

Both extractors (``marching_cubes`` and ``dualmesh_udf``) hand the field numpy points in
float64 and get numpy values back; the field itself sees float32 tensors on its device, at most
``chunk_size`` points per call, so memory stays bounded however many points are asked for.
Evaluations are counted (the extractors report them in their stats).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Field = Callable[[torch.Tensor], torch.Tensor]
"""(n, 3) float32 points on a device -> (n,) values."""


class FieldEvaluator:
    """Calls ``field`` in chunks, counting points; gradients by autograd or central differences.

    ``fd_step`` is the step of the central differences used when the field's output does not
    require grad (e.g. a lookup table); ``None`` makes such fields an error.
    """

    def __init__(self, field: Field, chunk_size: int, device, fd_step: float | None = None):
        if chunk_size < 1:
            raise ValueError(f"expected chunk_size >= 1, got {chunk_size!r}")
        self.field, self.chunk_size, self.device = field, int(chunk_size), torch.device(device)
        self.fd_step, self.count, self.grad_count = fd_step, 0, 0

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(self.field(x)).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"expected the field to return ({x.shape[0]},) values, got shape {tuple(y.shape)}")
        return y

    def _chunks(self, pts: np.ndarray):
        for s in range(0, len(pts), self.chunk_size):
            # float64 -> float32 once per point: a point named twice gets the same bits both times.
            yield s, torch.from_numpy(pts[s : s + self.chunk_size].astype(np.float32)).to(self.device)

    def values(self, pts: np.ndarray, dtype=np.float64) -> np.ndarray:
        """(n, 3) float64 points -> (n,) values as ``dtype``; ValueError on NaN."""
        out = np.empty(len(pts), dtype=dtype)
        torch_dtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
        for s, x in self._chunks(pts):
            with torch.no_grad():
                out[s : s + len(x)] = self._call(x).detach().to("cpu", torch_dtype).numpy()
        self.count += len(pts)
        if np.isnan(out).any():
            raise ValueError("expected finite field values, got NaN")
        return out

    def values_and_gradients(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3) float64 points -> (n,) float64 values and (n, 3) float64 gradients."""
        val, grad = np.empty(len(pts)), np.empty((len(pts), 3))
        for s, x in self._chunks(pts):
            with torch.enable_grad():
                x.requires_grad_(True)
                y = self._call(x)
                if y.requires_grad:
                    (g,) = torch.autograd.grad(y.sum(), x)
                else:  # a field that is not differentiable in torch (e.g. a lookup)
                    g = self._finite_differences(x.detach())
            val[s : s + len(x)] = y.detach().to("cpu", torch.float64).numpy()
            grad[s : s + len(x)] = g.detach().to("cpu", torch.float64).numpy()
        self.count += len(pts)
        self.grad_count += len(pts)
        if np.isnan(val).any():
            raise ValueError("expected finite field values, got NaN")
        return val, grad

    def _finite_differences(self, x: torch.Tensor) -> torch.Tensor:
        if self.fd_step is None:
            raise ValueError("expected a field differentiable by autograd (its output does not require grad)")
        h = self.fd_step
        cols = []
        with torch.no_grad():
            for a in range(3):
                d = torch.zeros(3, dtype=x.dtype, device=x.device)
                d[a] = h
                cols.append((self._call(x + d) - self._call(x - d)) / (2 * h))
        self.count += 6 * len(x)
        return torch.stack(cols, 1)
