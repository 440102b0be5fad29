"""The per-job result tables that the aggregation reads: written with a checksum, read with checks.

Each job writes its tables with :func:`write`: the CSV, then ``NAME.csv.sha256`` (the ``sha256sum``
format, so ``sha256sum -c`` checks it by hand too). :func:`read` refuses a table that is not what its job
wrote or not what the aggregation needs, with one line naming the file and what is wrong: a missing file,
a checksum that does not match (cut short at a line end, edited, damaged), a last line without its end, a
row with too many fields, a missing column, a row without one of its identifying values, a measured
value that is not a number. A silently wrong table is worse than no table.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments.runtime.io import atomic_write_text, write_csv_atomic
from experiments.runtime.provenance import TEXT_DTYPES


class InputError(ValueError):
    """A result table (or status file) the aggregation cannot trust; the message names the file."""


@dataclass(frozen=True)
class Kind:
    keys: tuple[str, ...]       # must be present and never empty
    numbers: tuple[str, ...]    # must be present and numeric (NaN allowed: "not measured")


REMEDY = "delete it and run the study again: its job makes it anew (a VAE run from its last checkpoint)"

_RUN_KEYS = ("experiment", "dataset", "latent", "estimator_id", "seed", "step")
_VARIANCE_NUMBERS = ("total_variance", "total_variance_se", "mean_variance", "grad_norm", "seconds_per_estimate",
                     "n_estimates", "bias_norm", "mse")

KINDS = {
    "synthetic": Kind(keys=("experiment", "problem", "setting", "parameter", "estimator_id", "n_samples", "seed"),
                      numbers=("exact_grad_norm", "total_variance", "mean_variance", "seconds_per_estimate")),
    "skipped": Kind(keys=("problem", "setting", "estimator_id", "estimator_name", "n_samples", "reason"), numbers=()),
    "metrics": Kind(keys=(*_RUN_KEYS, "split"), numbers=("elbo", "iwae", "seconds_per_step")),
    "variance": Kind(keys=(*_RUN_KEYS, "protocol", "measured_n_samples"), numbers=_VARIANCE_NUMBERS),
}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write(frame: pd.DataFrame, path: str | Path) -> None:
    """The CSV (atomically; a table without rows keeps its header), then its checksum file."""
    path = Path(path)
    text = write_csv_atomic(frame, path)
    atomic_write_text(checksum_path(path), f"{_digest(text.encode())}  {path.name}\n")


def _recorded_digest(path: Path) -> str | None:
    """The digest in ``path``'s checksum file ("" if it is empty), or ``None`` if there is none."""
    sums = checksum_path(path)
    if not sums.exists():
        return None
    words = sums.read_text().split()
    return words[0] if words else ""


def intact(path: str | Path) -> bool:
    """Whether ``path`` exists and matches its checksum file."""
    path = Path(path)
    recorded = _recorded_digest(path)
    return bool(recorded) and path.exists() and _digest(path.read_bytes()) == recorded


def read(path: str | Path, kind: str) -> pd.DataFrame:
    """The table at ``path``, checked as a table of ``kind`` (a key of ``KINDS``); :class:`InputError` if not."""
    path = Path(path)
    spec = KINDS[kind]
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from err
    sums = checksum_path(path)
    expected = _recorded_digest(path)
    if expected is None:
        raise InputError(f"{path}: no checksum file {sums.name} beside it: not written by a finished job; {REMEDY}")
    if _digest(data) != expected:
        raise InputError(f"{path}: checksum mismatch with {sums.name}: the file was cut short, edited or damaged "
                         f"after its job wrote it ({len(data)} bytes); {REMEDY}")
    return check(data, path, spec)


def check(data: bytes, path: Path, spec: Kind) -> pd.DataFrame:
    """The structural checks alone (for a table whose checksum matched, or one from elsewhere)."""
    if not data.strip():
        raise InputError(f"{path}: empty file (no header): cut short")
    if not data.endswith(b"\n"):
        raise InputError(f"{path}: the last line has no line end: the file was cut short")
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=TEXT_DTYPES)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"{path}: not a well-formed CSV: {first}") from err
    missing = [c for c in (*spec.keys, *spec.numbers) if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in spec.keys:
        empty = frame[column].isna()
        if empty.any():
            line = int(empty.to_numpy().nonzero()[0][0]) + 2  # the header is line 1
            raise InputError(f"{path}: line {line} has no {column}: the row is cut short or damaged")
    for column in spec.numbers:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() & frame[column].notna()
        if bad.any():
            line = int(bad.to_numpy().nonzero()[0][0]) + 2
            raise InputError(f"{path}: line {line}: {column} is {frame[column][bad].iloc[0]!r}, not a number")
    return frame


def read_status(path: str | Path) -> dict:
    """A run's ``status.json``, checked to hold a status and a step."""
    path = Path(path)
    try:
        status = json.loads(path.read_text())
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from err
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}): cut short or damaged") from err
    if (not isinstance(status, dict) or not isinstance(status.get("status"), str)
            or not isinstance(status.get("step"), int)):
        raise InputError(f"{path}: expected an object with a status (text) and a step (integer), got {status!r}")
    return status
