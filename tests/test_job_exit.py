"""A finished job ends without the interpreter's teardown (``experiments.runtime.cli.run_job``), and loses
nothing by it: its files, its log, its exit handlers (the job times) and its exit status are as before."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


def test_exit_handlers_and_streams_run_and_teardown_does_not(tmp_path):
    res = _python("""
        import atexit, sys
        from experiments.runtime.cli import run_job

        class Teardown:
            def __del__(self, _open=open):  # builtins may be gone by then: keep its own reference
                _open("teardown_ran", "w").close()

        kept = Teardown()  # a module global: freed only by the interpreter's teardown
        atexit.register(lambda: open("atexit_ran", "w").close())

        def main():
            sys.stdout.write("unflushed")  # no newline, no flush: run_job must flush it

        run_job(main)
        """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "unflushed"
    assert (tmp_path / "atexit_ran").exists()
    assert not (tmp_path / "teardown_ran").exists()


def test_meta_the_teardown_probe_fires_on_a_normal_exit(tmp_path):
    """Without run_job the same global's finalizer runs at exit: the probe above can tell the two apart."""
    res = _python("""
        class Teardown:
            def __del__(self, _open=open):  # builtins may be gone by then: keep its own reference
                _open("teardown_ran", "w").close()

        kept = Teardown()
        """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "teardown_ran").exists()


def test_a_failing_job_keeps_its_exit_status(tmp_path):
    res = _python("""
        from experiments.runtime.cli import run_job

        def main():
            raise SystemExit("error: something a user can act on")

        run_job(main)
        """, tmp_path)
    assert res.returncode == 1
    assert "something a user can act on" in res.stderr


def test_a_synthetic_job_writes_its_tables_log_and_times(tmp_path):
    times = tmp_path / "times.jsonl"
    res = subprocess.run([sys.executable, "-m", "experiments.synthetic", "--config",
                          str(ROOT / "config/synthetic/example.yaml"), "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "GRADVAR_JOB_TIMES": str(times), "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "out" / "synthetic.csv"))
    assert "wrote" in res.stderr.splitlines()[-1]  # the last log line made it out
    (line,) = times.read_text().splitlines()
    assert json.loads(line)["label"] == "synthetic"
