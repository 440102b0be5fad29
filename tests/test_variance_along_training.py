"""Variance along the whole run: the figure draws every estimator at every checkpoint of the shared host run,
a panel per latent and number of samples, the mean over seeds with the seeds' range; and the MNIST study
measures at least 10 checkpoints of every host run, with the claim's four stages still present."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.config import study_config
from experiments.config.jobs import checkpoint_steps
from experiments.config.plan import make_plan
from experiments.verdict.claim import training_stage
from experiments.verdict.plots import variance_along_training

ROOT = Path(__file__).resolve().parent.parent
LATENTS = {"gaussian(4)": ["pathwise", "reinforce", "reinforce_loo"],
           "bernoulli(4)": ["reinforce", "reinforce_loo", "gumbel", "straight_through"]}
STEPS = [0, 100, 200, 300]
SEEDS = [0, 1, 2]


def small_frame() -> pd.DataFrame:
    """Shared-checkpoints rows (S=1 and 4; leave-one-out at S=4 only), one own-run row, and a zero-variance
    row (rounding noise) of ``straight_through`` at step 0 of the bernoulli latent."""
    rng = np.random.default_rng(0)
    rows = []
    for latent, estimators in LATENTS.items():
        for i, est in enumerate(estimators):
            for samples in (1, 4):
                if est == "reinforce_loo" and samples == 1:
                    continue
                for seed in SEEDS:
                    for step in STEPS:
                        var = 10.0 ** (i + 1) * (1 + step / 100) / samples * rng.lognormal(0, 0.3)
                        rows.append({"protocol": "shared_checkpoints", "dataset": "digits", "latent": latent,
                                     "device": "cpu", "estimator_id": est, "run_estimator_id": estimators[0],
                                     "measured_n_samples": samples, "n_samples": 1, "seed": seed, "step": step,
                                     "total_variance": var, "selected": True})
    rows.append({**rows[0], "protocol": "own_run", "estimator_id": "own_run_only"})
    frame = pd.DataFrame(rows)
    noise = (frame["estimator_id"] == "straight_through") & (frame["step"] == 0)
    frame.loc[noise, "total_variance"] = 1e-33
    return frame


@pytest.fixture(scope="module")
def drawn():
    frame = small_frame()
    fig = variance_along_training(frame)
    yield frame, fig
    plt.close(fig)


def _panels(fig) -> dict[str, plt.Axes]:
    return {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.axison}


def test_a_panel_per_latent_and_number_of_samples_with_its_host(drawn):
    _, fig = drawn
    assert set(_panels(fig)) == {f"digits, {latent}, S={s} (host: {estimators[0]})"
                                 for latent, estimators in LATENTS.items() for s in (1, 4)}


def test_a_series_per_estimator_through_every_checkpoint_at_the_seeds_geometric_mean(drawn):
    frame, fig = drawn
    shared = frame[frame["protocol"] == "shared_checkpoints"]
    for title, ax in _panels(fig).items():
        latent, samples = title.split(", ")[1], int(title.split("S=")[1].split(" ")[0])
        rows = shared[(shared["latent"] == latent) & (shared["measured_n_samples"] == samples)]
        lines = [line for line in ax.get_lines() if line.get_marker() not in (None, "None", "")]
        assert len(lines) == rows["estimator_id"].nunique(), title   # one series per estimator measured there
        measured = rows[rows["total_variance"] > 1e-20]   # the rounding-noise row is not drawn
        expected = [tuple(np.round(np.log10(part["total_variance"]).groupby(part["step"]).mean(), 9))
                    for _, part in measured.groupby("estimator_id")]
        drawn_means = [tuple(np.round(np.log10(line.get_ydata()), 9)) for line in lines]
        assert sorted(drawn_means) == sorted(expected), title


def test_the_band_is_the_seeds_range(drawn):
    frame, fig = drawn
    ax = _panels(fig)["digits, gaussian(4), S=1 (host: pathwise)"]
    rows = frame[(frame["protocol"] == "shared_checkpoints") & (frame["latent"] == "gaussian(4)")
                 & (frame["measured_n_samples"] == 1)]
    spans = sorted((float(np.min(b.get_paths()[0].vertices[:, 1])), float(np.max(b.get_paths()[0].vertices[:, 1])))
                   for b in ax.collections)
    expected = sorted((part["total_variance"].min(), part["total_variance"].max())
                      for _, part in rows.groupby("estimator_id"))
    np.testing.assert_allclose(spans, expected, rtol=1e-9)


def test_every_estimator_is_told_apart_in_the_legend_and_own_runs_are_left_out(drawn):
    _, fig = drawn
    legend = fig.legends[0]
    names = [t.get_text() for t in legend.get_texts()]
    assert names == list(dict.fromkeys(e for estimators in LATENTS.values() for e in estimators))
    looks = [(str(h.get_color()), h.get_marker()) for h in legend.legend_handles]
    assert len(set(looks)) == len(looks)
    assert "own_run_only" not in names


def test_a_variance_zero_to_rounding_is_named_not_drawn(drawn):
    _, fig = drawn
    titles = [ax.get_title() for ax in fig.axes if "bernoulli" in ax.get_title()]
    assert all("zero to rounding, not drawn: straight_through" in t for t in titles)
    for ax in fig.axes:
        low, high = ax.get_ylim()
        assert np.log10(high / low) < 10   # the 1e-33 row does not stretch the axis


def test_the_mnist_study_measures_at_least_ten_checkpoints_of_every_host_and_keeps_the_claims_stages():
    config = study_config.check(yaml.safe_load((ROOT / "config" / "mnist.yaml").read_text()))
    plan = make_plan(config, config["devices"])
    assert len(plan.shared_jobs) == 12   # 4 latents x 3 seeds
    for job in plan.shared_jobs:
        steps = checkpoint_steps(plan.job_config(job.host.path))
        assert len(steps) >= 10, (job.path, steps)
        stages = [training_stage(s, steps[-1]) for s in steps]
        assert list(dict.fromkeys(stages)) == ["start", "early", "middle", "late"], (job.path, stages)
        # the single checkpoints the claim compared before (every 1000 steps) are still each stage's last
        assert {st: max(s for s, t in zip(steps, stages) if t == st) for st in ("early", "middle", "late")} \
            == {"early": 1000, "middle": 2000, "late": 3000}
