"""Checkpoints that can be trusted: each file carries the sha256 of its payload, and is loaded only if it
matches.

A checkpoint file is one header line, ``gradvar-checkpoint v1 sha256=<hex>``, followed by the bytes of
``torch.save(state)``. ``load`` checks the header and the checksum, then loads with ``weights_only=True``
(a checkpoint holds tensors, numbers, strings and containers of them, nothing that runs code). A file cut
short (a full disk, an interrupted copy) or with a flipped bit raises :class:`CorruptCheckpoint`, one line
naming the path and what is wrong. Files are written atomically (``experiments.runtime.io``), so a crash while
writing leaves the previous checkpoint as it was.

``newest_intact(paths)`` is how a run resumes: the newest checkpoint that loads; each corrupt one on the
way is logged with its path and renamed aside (``NAME.corrupt``), never deleted and never resumed from.
"""
from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Iterable

import torch

from experiments.runtime.io import atomic_write_bytes

log = logging.getLogger("gradvar.checkpoint")

MAGIC = b"gradvar-checkpoint v1 sha256="
_DIGEST_LEN = 64


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file is truncated, damaged or not a gradvar checkpoint."""


def save(path: str | Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    atomic_write_bytes(path, header + payload)


def load(path: str | Path, map_location=None) -> dict:
    path = Path(path)
    data = path.read_bytes()
    start = len(MAGIC) + _DIGEST_LEN + 1
    if not data.startswith(MAGIC) or len(data) < start or data[start - 1:start] != b"\n":
        raise CorruptCheckpoint(f"{path}: not a gradvar checkpoint, or cut short "
                                f"({len(data)} bytes, no valid header)")
    expected = data[len(MAGIC):start - 1].decode("ascii", "replace")
    payload = data[start:]
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise CorruptCheckpoint(f"{path}: checksum mismatch (sha256 {actual[:12]}..., header says "
                                f"{expected[:12]}...): the file is truncated or damaged ({len(payload)} payload bytes)")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # a checksum-valid file that torch refuses: say which, in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptCheckpoint(f"{path}: cannot be loaded: {first}") from err


def set_aside(path: Path) -> Path:
    """Rename a corrupt checkpoint to ``NAME.corrupt`` (``NAME.corrupt.1``, ... if taken); return the new path."""
    target = path.with_name(path.name + ".corrupt")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    path.rename(target)
    return target


def newest_intact(paths: Iterable[Path], map_location=None) -> tuple[Path, dict] | None:
    """The last of ``paths`` (in the order given: oldest first) that loads, with its state; corrupt files
    on the way are logged and set aside. ``None`` if none loads."""
    for path in reversed(list(paths)):
        try:
            return path, load(path, map_location)
        except CorruptCheckpoint as err:
            log.warning("%s; moved aside to %s", err, set_aside(path))
    return None
