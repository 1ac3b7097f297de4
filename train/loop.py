"""Pieces shared by the step-based training loops (the decoder / TI and the video model): the run folder's files,
checkpoints, the per-step log line and the loss terms reduced over processes.

A loop uses them in this order::

    files = RunFiles.open(out, main=..., config_record=..., resume_step=...)   # config.yaml, log.jsonl
    saver = Checkpointer(out, dist_info, model, optimizer, config=cfg, videos=videos, elapsed_before=...)
    bar = progress_bar(cfg["progress"] and main, total=last_step, initial=step, desc="train ...")
    ...  terms_f = reduce_terms(terms, dist_info, step=step)
         files.log(step_record(step, optimizer, terms_f, clips=...))
         saver.save(step)                                                        # checkpoints/last.pt
    files.finish(kind=..., model_config=..., model=..., record=record)           # model.pt, "done", run.json

Only process 0 writes; every process must call :meth:`Checkpointer.save` (it gathers the RNG states of all).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["RunFiles", "Checkpointer", "reduce_terms", "step_record", "progress_bar"]


def reduce_terms(terms: dict[str, Tensor], dist_info, *, step: int) -> dict[str, float]:
    """Scalar loss terms as floats, averaged over the processes under DDP (the global batch's terms).

    Raises ``FloatingPointError`` naming the step and every term when the total is not finite.
    """
    logged = torch.stack([v.detach().float() for v in terms.values()])
    if dist_info.distributed:
        import torch.distributed as dist

        dist.all_reduce(logged)
        logged /= dist_info.world_size
    out = {k: float(v) for k, v in zip(terms, logged)}
    if not math.isfinite(out["total"]):
        raise FloatingPointError(f"training loss became {out['total']} at step {step} (terms {out}); lower lr or "
                                 "check the data")
    return out


def step_record(step: int, optimizer: torch.optim.Optimizer, terms: dict[str, float], **extra: Any) -> dict[str, Any]:
    """The JSON-lines record of one step: ``step``, ``lr``, ``loss`` (the total), ``loss_<term>`` for every term,
    ``valid_fraction`` when the consistency term reported it, then ``extra``."""
    rec = {"type": "step", "step": step, "lr": optimizer.param_groups[0]["lr"], "loss": terms["total"],
           **{f"loss_{k}": v for k, v in terms.items() if k != "valid_fraction"}}
    if "valid_fraction" in terms:
        rec["valid_fraction"] = terms["valid_fraction"]
    return {**rec, **extra}


def progress_bar(enabled: bool, *, total: int | None, initial: int, desc: str):
    """A tqdm bar in steps, or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


class RunFiles:
    """``config.yaml`` and ``log.jsonl`` of a run folder (process 0 only; other processes get a no-op)."""

    def __init__(self, out: Path, log_file):
        self.out, self._log = out, log_file

    @classmethod
    def open(cls, out: str | os.PathLike, *, main: bool, config_record: dict[str, Any],
             resume_step: int | None) -> RunFiles:
        """Create the folder, save the resolved configuration, drop log lines after ``resume_step`` (a resumption)
        and open the log for appending."""
        from steadyseg.files import save_resolved_config
        from steadyseg.train.run_state import trim_log

        out = Path(out)
        if not main:
            return cls(out, None)
        out.mkdir(parents=True, exist_ok=True)
        save_resolved_config(out, config_record)
        if resume_step is not None:
            trim_log(out / "log.jsonl", resume_step)
        return cls(out, open(out / "log.jsonl", "a", encoding="utf-8"))  # noqa: SIM115 - closed by finish()

    def log(self, record: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()

    def finish(self, *, kind: str, model_config: dict[str, Any], model: nn.Module, record: dict[str, Any]) -> None:
        """Write ``model.pt`` (kind, config, the unwrapped model's weights), the ``done`` log line and ``run.json``."""
        from steadyseg.files import atomic_write_json
        from steadyseg.train.checkpoint import save_model
        from steadyseg.train.distributed import unwrap_model

        if self._log is None:
            return
        save_model(self.out / "model.pt", kind=kind, config=model_config, state_dict=unwrap_model(model).state_dict())
        self.log(record)
        self._log.close()
        atomic_write_json(self.out / "run.json", record)


class Checkpointer:
    """Writes the resumable state ``checkpoints/last.pt``: model, optimiser, step, elapsed seconds (including the
    runs before a resumption), every process's RNG states, the configuration and the training videos."""

    def __init__(self, out: str | os.PathLike, dist_info, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 config: dict[str, Any], videos: list[tuple[str, str]], elapsed_before: float = 0.0):
        self.out, self.dist_info, self.model, self.optimizer = Path(out), dist_info, model, optimizer
        self.config, self.videos, self.elapsed_before = config, videos, float(elapsed_before)
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training so far, earlier runs of a resumed training included."""
        return self.elapsed_before + (time.perf_counter() - self.started)

    def over_budget(self, minutes: float | None) -> bool:
        """Whether a time budget of ``minutes`` (None: none) is used up, earlier runs of a resumption included."""
        return minutes is not None and self.elapsed() >= float(minutes) * 60.0

    def save(self, step: int) -> None:
        from steadyseg.train.distributed import unwrap_model
        from steadyseg.train.run_state import gather_rng, save_run_state

        rng = gather_rng(self.dist_info)  # a collective call: every process
        if self.dist_info.is_main:
            save_run_state(self.out, {"model": unwrap_model(self.model).state_dict(),
                                      "optimizer": self.optimizer.state_dict(), "step": step,
                                      "elapsed_s": self.elapsed(), "rng": rng, "config": self.config,
                                      "videos": self.videos})
