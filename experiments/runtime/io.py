"""Atomic writes: a reader never sees a half-written file, and the file gets the permissions the umask
gives (a temporary file is created private, 0600; colleagues on a shared filesystem must read results).

A write that fails (a full disk, a permission refused) leaves no partial or temporary file behind, keeps
the previous version of the file, and raises :class:`WriteError`, one line naming the path and the cause.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pandas as pd


class WriteError(OSError):
    """A result could not be written; the message names the path and the cause."""

    def __str__(self) -> str:
        return self.strerror


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def _cause(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    return err.strerror or str(err)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            _write_fd(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise WriteError(err.errno, f"cannot write {path}: {_cause(err)}") from err
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_csv_atomic(frame: pd.DataFrame, path: str | os.PathLike) -> str:
    """A tidy CSV; a table without rows still has its header, so ``pandas.read_csv`` reads every file.
    Returns the text written."""
    if len(frame.columns) == 0:
        raise ValueError(f"{path}: refusing to write a table without columns (an empty table needs its header)")
    text = frame.to_csv(index=False)
    atomic_write_text(path, text)
    return text
