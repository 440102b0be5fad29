"""A training run's folder: what it holds, written so that a reader never sees more than the run has done.

``out/`` holds ``config.json`` (the resolved config), ``metrics.csv`` and ``variance.csv`` (checksummed result
tables, ``experiments.runtime.result_tables``), ``status.json`` (``{"status", "step", ...}``: ``running``, then
``completed``, ``diverged`` or ``preempted``) and ``checkpoints/``: ``resume_STEP.pt`` (the full state; the
newest ``KEEP_RESUME`` are kept) and ``step_STEP.pt`` (model snapshots at the variance steps, for the
``shared_checkpoints`` protocol), each with a checksum (``experiments.runtime.checkpoint``).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from experiments.runtime import checkpoint, result_tables
from experiments.runtime.io import atomic_write_text
from experiments.vae.run_config import RunConfig, as_dict

log = logging.getLogger("gradvar.vae")

#: How many full-state checkpoints a run keeps: the newest may be damaged, the one before it is the fallback.
KEEP_RESUME = 2

TABLES = ("metrics.csv", "variance.csv")


class RunFolder:
    """The files of the run in ``out`` whose config hashes to ``config_hash``."""

    def __init__(self, out: Path, config_hash: str):
        self.out, self.config_hash = Path(out), config_hash

    def write_status(self, status: str, step: int, **extra) -> None:
        atomic_write_text(self.out / "status.json", json.dumps({"status": status, "step": step, **extra}))

    def write_tables(self, metrics: pd.DataFrame, variance: pd.DataFrame) -> None:
        for frame, name in zip((metrics, variance), TABLES):
            result_tables.write(frame, self.out / name)

    def resume_checkpoints(self) -> list[Path]:
        """The full-state checkpoints, oldest first."""
        return sorted((self.out / "checkpoints").glob("resume_*.pt"))

    def save_resume(self, step: int, state: dict) -> None:
        """Save the full state at ``step`` and keep the newest ``KEEP_RESUME``."""
        checkpoint.save(self.out / "checkpoints" / f"resume_{step:07d}.pt", state)
        for old in self.resume_checkpoints()[:-KEEP_RESUME]:
            old.unlink()

    def save_snapshot(self, step: int, state: dict) -> None:
        """The model at a variance step, for the ``shared_checkpoints`` protocol."""
        checkpoint.save(self.out / "checkpoints" / f"step_{step:07d}.pt", state)

    def newest_state(self, map_location) -> dict | None:
        """The newest intact full state written under this config; checkpoints of another config (a setting
        changed since) are moved aside, never resumed from."""
        found = checkpoint.newest_intact(self.resume_checkpoints(), map_location=map_location)
        if found is None:
            return None
        path, state = found
        if state["config_hash"] == self.config_hash:
            log.info("resumed at step %d from %s", state["step"], path)
            return state
        self.set_aside_stale(state["config_hash"])
        return None

    def set_aside_stale(self, old_hash: str) -> None:
        stale = self.out / f"checkpoints.stale-{old_hash}"
        shutil.rmtree(stale, ignore_errors=True)
        (self.out / "checkpoints").rename(stale)
        log.warning("%s: the checkpoints were written under another config (hash %s, now %s): moved to %s; "
                    "starting afresh", self.out, old_hash, self.config_hash, stale)


def finished(config: RunConfig, out: Path) -> str | None:
    """The status of a run in ``out`` that finished under this config with its tables intact, else ``None``
    (after writing ``config.json`` where it is not this config: the pipeline writes it before the run, a run
    from the command line here). A finished run whose tables are gone or damaged is not finished: it resumes
    from its last checkpoint to write them anew."""
    out.mkdir(parents=True, exist_ok=True)
    status_path, saved_path = out / "status.json", out / "config.json"
    resolved = as_dict(config)
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else None
    if status_path.exists() and saved == resolved:
        status = json.loads(status_path.read_text())["status"]
        if status in ("completed", "diverged") and all(result_tables.intact(out / name) for name in TABLES):
            return status
    if saved != resolved:
        atomic_write_text(saved_path, json.dumps(resolved, indent=2, sort_keys=True))
    return None
