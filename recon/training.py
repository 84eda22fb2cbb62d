"""Training-loop plumbing shared by the fitters: optimiser, step, lr schedule, checkpoints."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def config_fingerprint(config) -> str:
    """Short hash of a dataclass config (a checkpoint resumes only under the same one)."""
    blob = json.dumps(asdict(config), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cosine_lr(fraction: float, lr: float, lr_final: float) -> float:
    """Cosine decay from ``lr`` at fraction 0 to ``lr_final`` at fraction 1."""
    return lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * fraction))


def make_adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam as every fitter uses it. Fused: one pass over each parameter instead of a chain of
    elementwise kernels, 5-10x faster on the CPU for a hash table of millions of entries."""
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99), eps=1e-15,
                            fused=torch.device(device).type in ("cpu", "cuda"))


def optimizer_step(optimizer, terms: dict, weights: dict, step: int) -> torch.Tensor:
    """One step on the weighted sum of the loss ``terms``; returns the loss.

    Raises FloatingPointError, naming every term, when the loss is not finite.
    """
    loss = sum(weights[k] * v for k, v in terms.items())
    if not torch.isfinite(loss):
        raise FloatingPointError(f"fit diverged at step {step}: loss terms {({k: float(v) for k, v in terms.items()})}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def checkpoint_due(path: Path | None, every: int, done: int, steps: int) -> bool:
    """Whether to save after ``done`` of ``steps`` steps (never after the last one)."""
    return path is not None and bool(every) and done % every == 0 and done < steps


def save_checkpoint(path: Path, model, optimizer, gen, step: int, fingerprint: str) -> None:
    """Write model, optimizer and sampler state after ``step`` steps to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
         "step": step, "fingerprint": fingerprint},
        tmp,
    )
    os.replace(tmp, path)  # atomic: a kill mid-write never leaves a torn checkpoint


def load_checkpoint(path: Path | None, model, optimizer, gen, fingerprint: str, device) -> int:
    """Restore the state saved at ``path`` if it exists and matches ``fingerprint``.

    Returns the step to resume from (0 when nothing was restored).
    """
    if path is None or not path.exists():
        return 0
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("fingerprint") != fingerprint:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    log.info("resuming fit from step %d (%s)", int(state["step"]), path)
    return int(state["step"])
