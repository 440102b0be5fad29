"""Where a job's time goes: start-up (the interpreter and imports) against the rest, recorded only when asked.

A job's entry point calls :func:`mark_started` once its imports are done. When the environment variable
``GRADVAR_JOB_TIMES`` names a file, the job appends one JSON line to it at exit: its label, its CPU seconds
(user + system, its finished child processes' included) and wall seconds since the process started, and the same
two at the mark (its start-up).
``benchmarks/bench_study.py`` sets it and sums the lines per rule. Unset, nothing is measured or written.
"""
from __future__ import annotations

import atexit
import json
import os
import time

ENV = "GRADVAR_JOB_TIMES"


def _cpu() -> float:
    """This process's CPU seconds and its finished children's (the figures rule's drawing processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _process_start() -> float:
    import psutil  # a Snakemake dependency; imported only when timing is asked for

    return psutil.Process().create_time()


def mark_started(label: str) -> None:
    """The job ``label`` has finished starting up (interpreter and imports)."""
    path = os.environ.get(ENV)
    if not path:
        return
    mark = (_cpu(), time.time())
    atexit.register(_write, path, label, mark)


def _write(path: str, label: str, mark: tuple[float, float]) -> None:
    start = _process_start()
    row = {"label": label, "cpu": _cpu(), "startup_cpu": mark[0], "wall": time.time() - start,
           "startup_wall": mark[1] - start}
    with open(path, "a") as fh:  # one short line per write: appends from parallel jobs do not interleave
        fh.write(json.dumps(row) + "\n")
