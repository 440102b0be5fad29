"""Provenance columns for every result row: package version, git commit, torch version, config hash."""
from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def config_hash(config: dict) -> str:
    """A short, stable hash of a config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version() -> str:
    try:
        return metadata.version("gradvar")
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance(config: dict) -> dict[str, str]:
    return {
        "gradvar_version": package_version(),
        "git_commit": git_commit(),
        "torch_version": str(torch.__version__),  # a plain str: TorchVersion is not a safe type to load
        "config_hash": config_hash(config),
    }
