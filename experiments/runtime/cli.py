"""What the command lines of the studies' jobs share: ``--config`` and ``--out``, logging, one-line errors."""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from contextlib import contextmanager
from typing import Callable, NoReturn, TypeVar

from experiments.config.typed_config import ConfigError

T = TypeVar("T")


def job_arguments(description: str, config_help: str, out_help: str, argv=None,
                  extend: Callable[[argparse.ArgumentParser], None] | None = None,
                  config_required: bool = True,
                  many: bool = False) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """``--config`` and ``--out``; with ``many``, each may repeat (lists, one ``--out`` per ``--config``)."""
    ap = argparse.ArgumentParser(description=description)
    action = "append" if many else "store"
    ap.add_argument("--config", required=config_required, action=action, help=config_help)
    ap.add_argument("--out", required=True, action=action, help=out_help)
    if extend is not None:
        extend(ap)
    args = ap.parse_args(argv)
    if many and len(args.config or []) != len(args.out):
        ap.error(f"got {len(args.config or [])} --config and {len(args.out)} --out; give one --out per --config")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return ap, args


def checked(ap: argparse.ArgumentParser, load: Callable[..., T], *args) -> T:
    """``load(*args)``; a config error ends the program with one line (exit code 2), not a traceback."""
    try:
        return load(*args)
    except ConfigError as err:
        ap.exit(2, f"config error: {err}\n")


@contextmanager
def failures_as_one_line(ap: argparse.ArgumentParser):
    """A failure a user can act on (a missing or corrupt data file or checkpoint, an absent device, a
    write that failed) ends the program with one line naming what and where (exit code 1), not a
    traceback; the files already finished are left as they were."""
    from experiments.runtime.checkpoint import CorruptCheckpoint
    from experiments.vae.data import DataError
    from experiments.runtime.devices import DeviceUnavailableError
    from experiments.runtime.io import WriteError
    try:
        yield
    except (CorruptCheckpoint, DataError, DeviceUnavailableError, WriteError) as err:
        ap.exit(1, f"error: {err}\n")


def run_job(main: Callable[[], None]) -> NoReturn:
    """Run a job's ``main`` and, once it returns, :func:`finish`. A ``main`` that raises (a one-line error's
    ``SystemExit``, a crash) ends the usual way."""
    main()
    finish()


def finish() -> NoReturn:
    """End a finished job's process now, without the interpreter's teardown.

    A finished job has written and closed its files; what is left at exit is freeing every module's objects and
    torch's state, which costs a job about half a second of CPU (a synthetic job on one thread: 3.0-3.4 s of
    CPU, 2.6-2.8 s without it), and a study runs ~70 jobs. The exit handlers still run (``atexit``: the job's
    times, ``experiments.runtime.jobtime``; logging's flush), then the standard streams are flushed and the
    process ends with status 0.
    """
    atexit._run_exitfuncs()  # CPython's own: what a normal exit runs before the teardown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing left to flush
            pass
    os._exit(0)
