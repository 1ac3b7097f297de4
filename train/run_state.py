"""The resumable state of a training run folder: ``RUN/checkpoints/last.pt``, the JSON-lines log, RNG states.

Generic over the model kind: the teacher, the decoder and the TI baseline use it.

- :func:`open_run_state`: a fresh run (refused when the folder already holds a state) or ``resume=True`` (refused
  without a state, or when a setting given now differs from the run's, except the ``free`` keys).
- :func:`trim_log`: drop log lines written after the restored step (and the old final record).
- :func:`rng_state` / :func:`set_rng_state`: this process's RNG states;
  :func:`gather_rng` / :func:`restore_rng`: per-process RNG states (a list under DDP) into / out of the state.
- :func:`save_run_state`: write the state atomically.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state", "checkpoint_path", "open_run_state", "trim_log", "gather_rng", "restore_rng",
           "resume_from", "save_run_state"]


def rng_state() -> dict[str, Any]:
    """This process's torch, Python, numpy (and CUDA) RNG states, in a form ``torch.save(weights_only)`` keeps."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states returned by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),) + tuple(state["python"][2:]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(out: str | os.PathLike) -> Path:
    """``out/checkpoints/last.pt``."""
    return Path(out) / "checkpoints" / "last.pt"


def open_run_state(out: str | os.PathLike, cfg: dict[str, Any], given: dict[str, Any], *, resume: bool,
                   free: set[str], identity: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(config, state)`` to start with: ``(cfg, None)`` for a fresh run, the run's own config for a resumption.

    Args:
        out: the run folder.
        cfg: the resolved configuration of this call.
        given: the keyword arguments the caller set (only those are compared with the run's).
        resume: continue ``checkpoints/last.pt``.
        free: keys that may differ when resuming (their values are taken from ``cfg``).
        identity: extra values stored in the state that must be equal (e.g. the training videos).

    Raises:
        FileNotFoundError: ``resume`` without a state; ValueError: a fresh run in a folder with a state, or a
        resumption whose settings differ (all differences listed, with the file name).
    """
    path = checkpoint_path(out)
    if not resume:
        if path.exists():
            raise ValueError(f"{path}: the run folder already holds a training state; "
                             "use --resume to continue it or choose another --out")
        return cfg, None
    from steadyseg.train.checkpoint import torch_load_safe

    if not path.is_file():
        raise FileNotFoundError(f"{path}: nothing to resume (no checkpoint in this run folder)")
    state = torch_load_safe(path, what="training checkpoint")
    saved = state["config"]
    diff = [f"{k}={cfg[k]!r} (run: {saved.get(k)!r})" for k in sorted(given)
            if k not in free and saved.get(k) != cfg.get(k)]
    diff += [f"{k}={v!r} (run: {state.get(k)!r})" for k, v in (identity or {}).items() if state.get(k) != v]
    if diff:
        raise ValueError(f"{path}: --resume with settings that differ from the run's: " + ", ".join(diff))
    # a setting newer than the run (absent from its saved config) keeps the value resolved now: the default
    return {**cfg, **saved, **{k: cfg[k] for k in free if k in cfg}}, state


def trim_log(log_path: str | os.PathLike, step: int) -> None:
    """Keep the JSON lines of ``log_path`` up to ``step`` (no ``"done"`` record); atomic; no file: nothing."""
    from steadyseg.files import atomic_path

    log_path = Path(log_path)
    if not log_path.exists():
        return
    kept = [ln for ln in log_path.read_text(encoding="utf-8").splitlines()
            if json.loads(ln).get("step", 0) <= step and json.loads(ln).get("type") != "done"]
    with atomic_path(log_path) as tmp:
        tmp.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")


def gather_rng(dist_info) -> Any:
    """This process's RNG states, or every process's (a list by rank) under DDP (a collective call)."""
    rng = rng_state()
    if dist_info.distributed:
        import torch.distributed as dist

        gathered: list[Any] = [None] * dist_info.world_size
        dist.all_gather_object(gathered, rng)
        rng = gathered
    return rng


def restore_rng(rng: Any, rank: int) -> None:
    """Restore the RNG states saved by :func:`gather_rng` for process ``rank``."""
    set_rng_state(rng[rank] if isinstance(rng, list) else rng)


def resume_from(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                rank: int) -> tuple[int, float]:
    """Load a run state's ``model`` and ``optimizer`` state dicts and process ``rank``'s RNG states; returns its
    ``(step, elapsed_s)``. Loops with more state (a grad scaler, a step total) restore those themselves."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    restore_rng(state["rng"], rank)
    return int(state["step"]), float(state["elapsed_s"])


def save_run_state(out: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``out/checkpoints/last.pt`` atomically."""
    from steadyseg.files import atomic_path

    path = checkpoint_path(out)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
