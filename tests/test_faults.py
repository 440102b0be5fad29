"""Fault injection: the faults that cluster users meet, each injected, each with its outcome asserted:
identical results after recovery, or a one-line error with nothing finished lost.

| fault | where |
|---|---|
| SIGKILL at random steps (3 kills of one run) | test_sigkill_at_random_steps_resumes_identically |
| SIGTERM / SIGUSR1 / SIGINT mid-run (preemption) | test_stop_signal_checkpoints_and_resumes_identically |
| Ctrl-C while a test runs a training run in-process | test_ctrl_c_stops_a_test_run_in_the_middle_of_a_training_run |
| truncated or bit-flipped checkpoint | test_damaged_checkpoint_is_set_aside_and_the_run_resumes_identically |
| every checkpoint damaged | test_all_checkpoints_damaged_starts_afresh_identically |
| damaged snapshot under the shared-checkpoints protocol | test_damaged_snapshot_fails_its_measurement_with_one_line |
| a write that raises ENOSPC / EACCES | test_full_disk_*, test_refused_write_* |
| truncated or malformed per-run CSV | test_result_table_*, test_study_under_faults |
| missing data file (a job, and mid-study) | test_missing_data_file_*, test_study_under_faults |
| two pipeline invocations at once | test_study_under_faults |
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments.runtime import checkpoint
from experiments.runtime import io as gio
from experiments.runtime import result_tables
from experiments.vae import train as vae_train
from experiments.vae.run_config import resolve
from experiments.vae.run_folder import KEEP_RESUME
from experiments.vae.shared_checkpoints import measure
from studies import SMALL_SYNTHETIC, copy_workflow, tables as tables_target

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SHARED_DATA = Path(os.environ.get("GRADVAR_DATA") or ROOT.parent / "shared" / "data")
TIMING = ["seconds_per_step", "seconds_per_estimate", "work_normalized_variance", "eval_seconds"]
STEPS = 240
SETTINGS = {"latent": {"family": "bernoulli", "dim": 6},
            "estimator": {"name": "reinforce", "baseline": "moving_average", "nvil": True}, "n_samples": 2,
            "train": {"steps": STEPS}, "eval": {"every": 60}, "variance": {"every": 120, "min_estimates": 10,
                                                                            "max_estimates": 10},
            "checkpoint_every": 10, "model": {"hidden": [32]}}


def _args(settings: dict) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


RUN_ARGS = _args(SETTINGS)
#: RELAX trains its own surrogate network and temperature inside the estimator (with its own optimizer).
RELAX_SETTINGS = {**SETTINGS, "estimator": {"name": "relax"}}


def _cmd(out: Path, settings: dict = SETTINGS) -> list[str]:
    return [sys.executable, "-m", "experiments.vae.train", "--out", str(out), *_args(settings)]


def _status(out: Path) -> dict:
    try:
        return json.loads((out / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"status": "absent", "step": -1}


def _start_and_signal(out: Path, at_step: int, sig: int, delay: float = 0.0,
                      settings: dict = SETTINGS) -> subprocess.Popen:
    """Start a run, send ``sig`` once its status says it passed ``at_step`` (plus ``delay`` s), wait for it."""
    proc = subprocess.Popen(_cmd(out, settings), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _status(out)["step"] < at_step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    assert proc.poll() is None, f"the run ended before step {at_step}: the fault was not injected"
    proc.send_signal(sig)
    proc.stderr_text = proc.communicate(timeout=120)[1]
    return proc


def _results(out: Path):
    metrics = pd.read_csv(out / "metrics.csv").drop(columns=TIMING, errors="ignore")
    variance = pd.read_csv(out / "variance.csv").drop(columns=TIMING, errors="ignore")
    model = checkpoint.load(sorted((out / "checkpoints").glob("resume_*.pt"))[-1])["model"]
    return metrics, variance, model


def _assert_same(a: Path, b: Path) -> None:
    m1, v1, p1 = _results(a)
    m2, v2, p2 = _results(b)
    pd.testing.assert_frame_equal(m1, m2, check_exact=True)
    pd.testing.assert_frame_equal(v1, v2, check_exact=True)
    assert p1.keys() == p2.keys() and all(torch.equal(p1[k], p2[k]) for k in p1)
    assert _status(b) == {"status": "completed", "step": STEPS}


def _finish(out: Path, settings: dict = SETTINGS) -> subprocess.CompletedProcess:
    res = subprocess.run(_cmd(out, settings), cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    _finish(out)
    return out


def _preempted(out: Path, at_step: int = 100) -> int:
    proc = _start_and_signal(out, at_step, signal.SIGTERM)
    assert proc.returncode == 75, proc.stderr_text[-2000:]
    return _status(out)["step"]


# --- kills and preemption -----------------------------------------------------------------------------

def test_sigkill_at_random_steps_resumes_identically(straight, tmp_path):
    rng = random.Random(20261122)
    out = tmp_path / "killed"
    for at_step in sorted(rng.sample(range(20, STEPS - 40), 3)):
        proc = _start_and_signal(out, at_step, signal.SIGKILL, delay=rng.uniform(0, 0.05))
        assert proc.returncode == -signal.SIGKILL
        status = _status(out)
        assert status["status"] == "running" and status["step"] >= at_step
    _finish(out)
    _assert_same(straight, out)


def test_relax_run_killed_and_resumed_is_identical(tmp_path):
    """RELAX's own network, temperature and optimizer state are in the checkpoint: a kill loses nothing."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _finish(straight, RELAX_SETTINGS)
    for at_step, sig in ((70, signal.SIGKILL), (150, signal.SIGTERM)):
        _start_and_signal(killed, at_step, sig, delay=0.01, settings=RELAX_SETTINGS)
    _finish(killed, RELAX_SETTINGS)
    _assert_same(straight, killed)
    state = checkpoint.load(sorted((killed / "checkpoints").glob("resume_*.pt"))[-1])["est"]
    assert any("surrogate" in k or "extra_state" in k for k in state), sorted(state)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_stop_signal_checkpoints_and_resumes_identically(straight, tmp_path, sig):
    """A scheduler's signal ends the job with code 75 (run it again); Ctrl-C ends it as Ctrl-C does (by
    SIGINT), after the same checkpoint."""
    out = tmp_path / "preempted"
    proc = _start_and_signal(out, 100, sig, delay=0.01)
    assert proc.returncode == (-signal.SIGINT if sig == signal.SIGINT else 75), proc.stderr_text[-2000:]
    status = _status(out)
    name = signal.Signals(sig).name
    assert status["status"] == "preempted" and status["signal"] == name and 100 <= status["step"] < STEPS
    # the checkpoint is at the step reached, not at the last multiple of checkpoint_every
    newest = sorted((out / "checkpoints").glob("resume_*.pt"))[-1]
    assert checkpoint.load(newest)["step"] == status["step"]
    assert f"received {name}" in proc.stderr_text
    _finish(out)
    _assert_same(straight, out)


INNER_TESTS = """
import os
from pathlib import Path
from experiments.vae import train as vae_train
from experiments.vae.run_config import resolve

def test_a_long_training_run():
    settings = {**SETTINGS, "train": {"steps": 100_000}, "eval": {"every": 0}, "variance": {"every": 0}}
    vae_train.train(resolve(settings), Path(os.environ["RUN_DIR"]))

def test_after_it():
    Path(os.environ["RUN_DIR"], "second_test_ran").touch()
"""


def _as_at_a_terminal() -> None:
    """The child starts as a program started at a terminal does: SIGINT neither ignored nor blocked (a test
    worker's own signal state is not a user's)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_state(pid: int) -> str:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "unknown"
    return ", ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def test_ctrl_c_stops_a_test_run_in_the_middle_of_a_training_run(tmp_path):
    """One SIGINT to a pytest process whose test is training a run in-process ends the whole test run
    (pytest's 'interrupted' exit, no further test), not just that test."""
    (tmp_path / "test_inner.py").write_text(f"SETTINGS = {SETTINGS!r}\n" + INNER_TESTS)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                             str(tmp_path / "test_inner.py")],
                            cwd=tmp_path, env={**os.environ, "RUN_DIR": str(run_dir)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_as_at_a_terminal)
    deadline = time.time() + 120
    while _status(run_dir)["step"] < 20 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the inner test run ended before the signal"
    signals = _signal_state(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        out = proc.communicate(timeout=300)[0]  # seconds when idle; on a loaded machine, a minute or more
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"one SIGINT did not end the inner test run; its signal state was {signals}: "
                             f"{proc.communicate()[0][-2000:]}") from None
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-2000:]
    assert "KeyboardInterrupt" in out and not (run_dir / "second_test_ran").exists(), out[-2000:]
    assert _status(run_dir)["status"] == "running"  # no handler of the run's took the signal


# --- damaged checkpoints ------------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_bit], ids=["truncated", "bit_flipped"])
def test_damaged_checkpoint_is_set_aside_and_the_run_resumes_identically(straight, tmp_path, damage):
    out = tmp_path / "run"
    step = _preempted(out)
    newest, previous = sorted((out / "checkpoints").glob("resume_*.pt"))[-2:][::-1]
    previous_step = checkpoint.load(previous)["step"]
    assert step > previous_step
    damage(newest)
    with pytest.raises(checkpoint.CorruptCheckpoint):
        checkpoint.load(newest)
    res = _finish(out)
    assert f"{newest}: checksum mismatch" in res.stderr
    assert f"resumed at step {previous_step} from {previous}" in res.stderr
    assert newest.with_name(newest.name + ".corrupt").exists()
    _assert_same(straight, out)


def test_all_checkpoints_damaged_starts_afresh_identically(straight, tmp_path):
    out = tmp_path / "run"
    _preempted(out)
    for path in (out / "checkpoints").glob("resume_*.pt"):
        _truncate(path)
    res = _finish(out)
    assert "resumed at step" not in res.stderr
    assert len(list((out / "checkpoints").glob("resume_*.pt.corrupt"))) == KEEP_RESUME
    _assert_same(straight, out)


def test_damaged_snapshot_fails_its_measurement_with_one_line(straight, tmp_path):
    run = tmp_path / "host"
    shutil.copytree(straight, run)
    snapshot = run / "checkpoints" / "step_0000120.pt"
    _flip_bit(snapshot)
    from experiments.config.estimator_spec import EstimatorSpec
    spec = EstimatorSpec.from_config("reinforce", {"name": "reinforce"}, "estimators.reinforce")
    with pytest.raises(checkpoint.CorruptCheckpoint) as err:
        measure(run, [(spec, [2])])
    message = str(err.value)
    assert "\n" not in message and str(snapshot) in message and f"remove {run}" in message


def test_checkpoints_load_without_running_code(straight):
    """``weights_only=True`` works on every checkpoint a run writes, and a file that is not one is refused."""
    for path in (straight / "checkpoints").glob("*.pt"):
        checkpoint.load(path)
    fake = straight.parent / "plain.pt"
    torch.save({"model": {}}, fake)
    with pytest.raises(checkpoint.CorruptCheckpoint, match="not a gradvar checkpoint"):
        checkpoint.load(fake)


# --- write failures -----------------------------------------------------------------------------------

def _fail_writes(monkeypatch, err: int, when) -> list[str]:
    """Make ``experiments.runtime.io`` writes of the files ``when(path)`` selects raise ``OSError(err)`` mid-write."""
    failed = []
    real = gio._write_fd

    def write_fd(fd, data):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if when(path):
            failed.append(path)
            os.write(fd, data[: len(data) // 3])  # part of it reached the disk, as when a disk fills
            raise OSError(err, os.strerror(err))
        real(fd, data)

    monkeypatch.setattr(gio, "_write_fd", write_fd)
    return failed


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_during_a_checkpoint_fails_with_one_line_and_loses_nothing(straight, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    config = resolve(SETTINGS)
    failed = _fail_writes(monkeypatch, errno.ENOSPC,
                          lambda p: "resume_0000100" in p)
    argv = ["--out", str(out), *RUN_ARGS]
    with pytest.raises(SystemExit) as exit_info:
        vae_train.main(argv)
    assert exit_info.value.code == 1 and failed
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: cannot write {out / 'checkpoints' / 'resume_0000100.pt'}: no space left on the device"
    assert not _leftovers(out) and not (out / "checkpoints" / "resume_0000100.pt").exists()
    assert checkpoint.load(out / "checkpoints" / "resume_0000090.pt")["step"] == 90  # the previous one is intact
    assert _status(out) == {"status": "running", "step": 90}
    monkeypatch.undo()
    assert vae_train.train(config, out) == "completed"
    _assert_same(straight, out)


def test_full_disk_during_a_table_keeps_the_previous_table(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    result_tables.write(pd.DataFrame({"a": [1, 2]}), path)
    before = path.read_bytes()
    _fail_writes(monkeypatch, errno.ENOSPC, lambda p: "metrics.csv" in p)
    with pytest.raises(gio.WriteError) as err:
        result_tables.write(pd.DataFrame({"a": [1, 2, 3]}), path)
    assert str(err.value) == f"cannot write {path}: no space left on the device"
    assert path.read_bytes() == before and not _leftovers(tmp_path)


def test_refused_write_names_the_path_and_the_cause(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    gio.atomic_write_text(path, "old")
    _fail_writes(monkeypatch, errno.EACCES, lambda p: True)
    with pytest.raises(gio.WriteError, match=rf"^cannot write {path}: Permission denied$"):
        gio.atomic_write_text(path, "new")
    assert path.read_text() == "old" and not _leftovers(tmp_path)


def test_an_unwritable_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(gio.WriteError, match=rf"^cannot write {blocker}/x/t.csv: "):
        gio.atomic_write_text(blocker / "x" / "t.csv", "a")


# --- the aggregation's inputs -------------------------------------------------------------------------

def _table(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.csv"
    frame = pd.DataFrame({"experiment": "vae", "dataset": "digits", "latent": "gaussian(4)", "estimator_id": "pw",
                          "seed": 0, "step": [0, 30, 60], "split": "test", "elbo": [-50.5, -40.25, -35.0],
                          "iwae": float("nan"), "seconds_per_step": [float("nan"), 0.01, 0.01]})
    result_tables.write(frame, path)
    return path


def test_result_table_reads_back_when_intact(tmp_path):
    assert len(result_tables.read(_table(tmp_path), "metrics")) == 3


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-7], "checksum mismatch"),                                   # cut in the middle of a row
    (lambda d: d[: d.rindex(b"\n", 0, len(d) - 1) + 1], "checksum mismatch"),  # cut at a line end: a row lost
    (lambda d: d.replace(b"-40.25", b"-40.35"), "checksum mismatch"),          # one value changed
    (lambda d: b"", "checksum mismatch"),
])
def test_result_table_that_is_not_what_its_job_wrote_is_refused(tmp_path, damage, message):
    path = _table(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(result_tables.InputError) as err:
        result_tables.read(path, "metrics")
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_result_table_without_its_checksum_is_refused(tmp_path):
    path = _table(tmp_path)
    result_tables.checksum_path(path).unlink()
    with pytest.raises(result_tables.InputError, match="no checksum file metrics.csv.sha256"):
        result_tables.read(path, "metrics")


@pytest.mark.parametrize("text, message", [
    ("experiment,dataset\nvae,digits\n", "missing column(s) latent, estimator_id, seed, step, split, elbo"),
    ("a,b\n1,2", "the last line has no line end"),
    ("a,b\n1,2\n1,2,3,4\n", "not a well-formed CSV"),
    ("", "empty file"),
])
def test_malformed_table_structure_is_named(tmp_path, text, message):
    with pytest.raises(result_tables.InputError,
                       match="^" + str(tmp_path / "t.csv") + ": " + message.replace("(", r"\(").replace(")", r"\)")):
        result_tables.check(text.encode(), tmp_path / "t.csv", result_tables.KINDS["metrics"])


def test_rows_without_keys_or_with_words_for_numbers_are_named(tmp_path):
    path = _table(tmp_path)
    frame = pd.read_csv(path)
    cut = frame.astype(object)
    cut.loc[1, ["split", "elbo", "iwae", "seconds_per_step"]] = None  # a row cut short before its last fields
    with pytest.raises(result_tables.InputError, match=r"line 3 has no split"):
        result_tables.check(cut.to_csv(index=False).encode(), path, result_tables.KINDS["metrics"])
    words = frame.astype(object)
    words.loc[2, "elbo"] = "oops"
    with pytest.raises(result_tables.InputError, match=r"line 4: elbo is 'oops', not a number"):
        result_tables.check(words.to_csv(index=False).encode(), path, result_tables.KINDS["metrics"])


def test_damaged_status_is_named(tmp_path):
    path = tmp_path / "status.json"
    path.write_text('{"status": "comp')
    with pytest.raises(result_tables.InputError, match=rf"^{path}: not valid JSON"):
        result_tables.read_status(path)


# --- data ---------------------------------------------------------------------------------------------

def test_missing_data_file_fails_a_run_with_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "experiments.vae.train", "--out", str(tmp_path / "run"),
                          "--set", "dataset=mnist", "--set", f"data_dir={tmp_path / 'empty'}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "not found in" in last and "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()


# --- the pipeline -------------------------------------------------------------------------------------

FAULTS_STUDY = {
    "study": "faults", "seeds": [0], "devices": ["cpu"],
    "synthetic": SMALL_SYNTHETIC,
    "vae": {"datasets": ["mnist"], "n_samples": [2],
            "settings": {"model": {"hidden": [16]}, "train": {"steps": 4, "batch_size": 20},
                         "eval": {"every": 4, "iwae_k": 2, "train_subset": 100},
                         "variance": {"every": 2, "batch_size": 10, "min_estimates": 4, "max_estimates": 4,
                                      "reference_gradient": {"n_samples": 4, "n_estimates": 4}}},
            "latents": {"gaussian": {"family": "gaussian", "dim": 2}},
            "estimators": {"pathwise": {"name": "pathwise"}, "reinforce": {"name": "reinforce"}},
            "shared_checkpoints": {"trained_with": {"gaussian": "pathwise"}, "n_samples": [2]}},
}


def _snakemake(workdir: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([*SNAKEMAKE, "--cores", "1", "--configfile=study.yaml", *args], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, proc: subprocess.Popen, what: str, limit: float = 300) -> None:
    deadline = time.time() + limit
    while not predicate():
        assert proc.poll() is None, f"snakemake ended before {what}:\n{proc.communicate()[0][-3000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _untimed(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame.columns if "work" in c or "cost" in c or "seconds" in c])


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"the MNIST files are not in {SHARED_DATA}")
def test_study_under_faults(tmp_path):
    """One study through: a second invocation while the first runs, the MNIST file vanishing mid-study,
    a truncated per-run table; then recovery by rerunning, with nothing finished redone or lost."""
    data = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "mnist", data / "mnist")
    workdir = copy_workflow(tmp_path / "work", study={**FAULTS_STUDY, "vae": {**FAULTS_STUDY["vae"],
                                                                               "data_dir": str(data)}})
    results = workdir / "results" / "faults"
    synthetic_log = workdir / "logs" / "faults" / "synthetic" / "cpu" / "pathwise.log"  # every seed of one estimator
    train_file = data / "mnist" / "train-images-idx3-ubyte.gz"

    # Synthetic jobs first (one core), so the data file can vanish after planning, before the VAE job.
    first = _snakemake(workdir, "--prioritize", *(f"results/faults/synthetic/cpu/seed0/{e}/synthetic.csv"
                                                  for e in ("pathwise", "reinforce")))
    _wait_for(synthetic_log.exists, first, "the first synthetic job started")
    train_file.rename(train_file.with_suffix(".away"))
    out1 = first.communicate(timeout=600)[0]
    assert first.returncode != 0, out1[-3000:]
    run = results / "vae" / "runs" / "mnist" / "gaussian" / "pathwise" / "s2" / "cpu" / "seed0"
    train_log = workdir / "logs" / "faults" / "vae" / "mnist" / "gaussian" / "pathwise" / "s2" / "cpu" / "seed0.log"
    last = train_log.read_text().strip().splitlines()[-1]
    assert last.startswith("error: ") and "train-images-idx3-ubyte.gz not found" in last
    finished = {p: p.stat().st_mtime_ns for p in (results / "synthetic").rglob("synthetic.csv")}
    assert len(finished) == 2 and not (run / "status.json").exists()

    # The file is back: the rerun runs only what is missing; a second invocation meanwhile is refused.
    train_file.with_suffix(".away").rename(train_file)
    train_log.unlink()
    # the tables, not the figures: tests/test_pipeline.py draws those
    rerun = _snakemake(workdir, tables_target("faults"))
    _wait_for(train_log.exists, rerun, "the VAE run started")
    second = subprocess.run([*SNAKEMAKE, "--cores", "1", "--configfile", "study.yaml"], cwd=workdir,
                            capture_output=True, text=True)
    assert second.returncode != 0 and "Directory cannot be locked" in second.stdout + second.stderr, second.stderr
    out2 = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out2[-3000:]
    assert "rule synthetic:" not in out2 and "rule vae_train:" in out2
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    claim = _untimed(results / "tables" / "variance_claim.csv")

    # A per-run table cut at a line end (a row lost, the file still well-formed) stops the aggregation.
    metrics = run / "metrics.csv"
    text = metrics.read_bytes()
    metrics.write_bytes(text[: text.rindex(b"\n", 0, len(text) - 1) + 1])
    third = _snakemake(workdir, tables_target("faults"))
    out3 = third.communicate(timeout=600)[0]
    assert third.returncode != 0 and f"error: {metrics.relative_to(workdir)}: checksum mismatch" in out3, out3[-3000:]
    assert (run / "variance.csv").exists() and all(p.exists() for p in finished)
    # As the message says: delete it, rerun; the run remakes it from its final checkpoint, the same.
    metrics.unlink()
    fourth = _snakemake(workdir, tables_target("faults"))
    out4 = fourth.communicate(timeout=600)[0]
    assert fourth.returncode == 0, out4[-3000:]
    assert metrics.read_bytes() == text
    # The shared-checkpoint measurement reran (its host's files are new): all but its timings is the same.
    pd.testing.assert_frame_equal(_untimed(results / "tables" / "variance_claim.csv"), claim)
