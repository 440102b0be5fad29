"""Atomic writes: a reader never sees a half-written file, and the file gets the permissions the umask
gives (a temporary file is created private, 0600; colleagues on a shared filesystem must read results)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv_atomic(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """A tidy CSV; a table without rows still has its header, so ``pandas.read_csv`` reads every file."""
    if len(frame.columns) == 0:
        raise ValueError(f"{path}: refusing to write a table without columns (an empty table needs its header)")
    atomic_write_text(path, frame.to_csv(index=False))
