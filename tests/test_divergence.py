"""Divergence is recorded on the device at its exact step and read only at the loop's boundaries (no host sync
per training step), in single and stacked runs; a diverged categorical run does not crash its sampler."""
from __future__ import annotations

import json
import math

import pandas as pd
import torch

from experiments.vae import divergence, stacked
from experiments.vae import train as vae_train
from experiments.vae.divergence import DivergenceRecord
from experiments.vae.run_config import resolve

TINY = {"dataset": "digits", "model": {"hidden": [16]}, "latent": {"family": "categorical", "groups": 2, "classes": 3},
        "estimator": {"name": "reinforce", "baseline": "leave_one_out"}, "n_samples": 2,
        "eval": {"every": 40, "iwae_k": 2, "train_subset": 50}, "variance": {"every": 0}, "checkpoint_every": 40,
        "train": {"steps": 120, "batch_size": 20}}


def _config(seed: int = 0, **extra):
    return resolve({**TINY, "seed": seed, **extra})


def test_the_record_keeps_the_first_bad_step_and_what_went_bad():
    rec = DivergenceRecord(3, torch.device("cpu"))
    ok = torch.tensor([1.0, 1.0, 1.0])
    rec.record(0, torch.tensor([1.0, 2.0, 3.0]), ok)
    rec.record(1, torch.tensor([1.0, math.nan, 3.0]), ok)
    rec.record(2, torch.tensor([1.0, math.nan, 3.0]), torch.tensor([1.0, 1.0, math.inf]))
    rec.record(3, torch.tensor([math.inf, 1.0, 1.0]), ok)
    assert rec.read() == {0: (3, "loss is inf at step 3"), 1: (1, "loss is nan at step 1"),
                          2: (2, "parameters became non-finite at step 2")}


def test_the_record_of_a_stack_is_indexed_by_member():
    rec = DivergenceRecord(4, torch.device("cpu"))
    rec.record(5, torch.tensor([1.0, math.nan]), torch.tensor([0.0, 0.0]), index=torch.tensor([3, 1]))
    assert rec.read() == {1: (5, "loss is nan at step 5")}


def test_a_read_keeps_the_first_bad_step_across_reads_reductions_and_groups(monkeypatch):
    """Steps folded in batches (a read, and the bound on pending steps) and with the stack's members changing
    (a member dropped from the group) keep each member's first bad step: a later bad step never replaces it."""
    monkeypatch.setattr(DivergenceRecord, "MAX_PENDING", 7)
    rec = DivergenceRecord(3, torch.device("cpu"))
    everyone, two = torch.tensor([0, 1, 2]), torch.tensor([0, 2])
    fine = torch.zeros(3)
    for step in range(20):
        loss = torch.ones(3)
        if step == 4:
            loss[1] = math.nan
        if step >= 9:
            loss[1] = math.inf  # later bad steps of the same member
        rec.record(step, loss, fine, index=everyone)
    assert rec.read() == {1: (4, "loss is nan at step 4")}
    for step in range(20, 40):
        sums = torch.tensor([0.0, math.nan if step >= 33 else 0.0])
        rec.record(step, torch.ones(2), sums, index=two)
    assert rec.read() == {1: (4, "loss is nan at step 4"), 2: (33, "parameters became non-finite at step 33")}


def test_parameter_sums_per_member():
    a = torch.ones(3, 2, 2)
    a[1, 0, 1] = math.inf
    b = torch.ones(3, 4)
    b[2, 3] = math.nan
    assert divergence.parameter_sums([a, b], 3).isfinite().tolist() == [True, False, False]
    assert divergence.parameter_sums([torch.ones(2), torch.zeros(3)]).tolist() == [2.0]


def test_a_run_reads_its_record_only_at_boundaries(tmp_path, monkeypatch):
    """120 steps with evaluations and checkpoints every 40: the record is read 3 times, at the boundaries that
    follow training (steps 40, 80, 120; at step 0 nothing has trained), not once per step; a wrong variant that
    read it every step would read it 120 times or more."""
    reads = []
    original = DivergenceRecord.read
    monkeypatch.setattr(DivergenceRecord, "read", lambda self: reads.append(1) or original(self))
    assert vae_train.train(_config(), tmp_path / "run") == "completed"
    assert len(reads) == 3


def test_a_nan_is_recorded_at_its_step_between_boundaries(tmp_path):
    """The NaN at step 57 is read at the boundary of step 80, and recorded as step 57; no evaluation row from
    after it (the one at 80) is written, and a categorical run's sampler does not fail on the NaN weights."""
    out = tmp_path / "run"
    assert vae_train.train(_config(fault={"nan_at_step": 57}), out) == "diverged"
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "diverged" and status["step"] == 57 and status["message"] == "loss is nan at step 57"
    assert sorted(pd.read_csv(out / "metrics.csv").step.unique()) == [0, 40]


def test_a_stacked_member_diverges_at_its_step_and_the_others_equal_their_runs_alone(tmp_path):
    configs = [_config(0), _config(1, fault={"nan_at_step": 57}), _config(2)]
    outs = [tmp_path / f"m{i}" for i in range(3)]
    assert stacked.train_stacked(configs, outs) == ["completed", "diverged", "completed"]
    status = json.loads((outs[1] / "status.json").read_text())
    assert status["step"] == 57 and status["message"] == "loss is nan at step 57"
    alone = tmp_path / "alone"
    vae_train.train(_config(2), alone)
    cols = ["step", "split", "elbo", "iwae"]
    pd.testing.assert_frame_equal(pd.read_csv(outs[2] / "metrics.csv")[cols], pd.read_csv(alone / "metrics.csv")[cols])
