"""Provenance columns for every result row: package version, git commit, torch version, config hash."""
from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


#: The provenance columns of every result row; their values are text, never numbers (``TEXT_DTYPES``).
COLUMNS = ("gradvar_version", "git_commit", "torch_version", "config_hash")
#: What every reader of a result table passes to ``pd.read_csv(dtype=...)``: a hash is text even where its
#: characters would parse as a number.
TEXT_DTYPES = {column: str for column in COLUMNS}


def config_hash(config: dict) -> str:
    """A short, stable hash of a config (key order does not matter), as ``sha256:`` and 12 hex digits, so
    that no reader takes it for a number (``3675e0888127`` alone reads as 3675 x 10^888127)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:12]


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    return out.stdout.strip() if out.returncode == 0 else ""


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checked-out commit as ``git describe`` abbreviates one: ``g`` and 12 hex digits (never a number to
    a CSV reader), ``-dirty`` where tracked files differ from it; ``unknown`` outside a git checkout."""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        if not commit:
            return "unknown"
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
        return f"g{commit}" + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version() -> str:
    try:
        return metadata.version("gradvar")
    except metadata.PackageNotFoundError:
        return "unknown"


def _torch_version() -> str:
    import torch  # here, not at the top: readers of result tables need not load torch

    return str(torch.__version__)  # a plain str: TorchVersion is not a safe type to load


def provenance(config: dict) -> dict[str, str]:
    return {
        "gradvar_version": package_version(),
        "git_commit": git_commit(),
        "torch_version": _torch_version(),
        "config_hash": config_hash(config),
    }
