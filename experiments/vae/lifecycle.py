r"""The one training loop: a run alone and a stack of runs both go through :func:`train_runs`.

A run's lifecycle is its :class:`~experiments.vae.train.Run`'s (resume, evaluate and measure when due,
checkpoint, end ``completed``, ``diverged`` or ``preempted``); the loop only decides *when*, and a *stepper*
decides *how* the members train:

- :class:`Alone` steps one run with its own ``Run.train_step``;
- ``StackedRuns`` (``stacked.py``) steps the members at the same step as one batched model, and copies a
  member's slice back into its ``Run`` (``pull``) before the Run evaluates, measures or checkpoints.

A stepper has ``divergence`` (a ``DivergenceRecord`` indexed by member), ``use(group)`` (the members that step
together next), ``pull(k, full)`` (member ``k``'s state into its Run; ``full``: with the optimizer's, what a
checkpoint holds) and ``train_step()`` (one step of the group in use).

The loop waits for the device only at its *boundaries*, where a member evaluates, measures, checkpoints, stops
or ends (``Run.at_boundary``): there it adds the training time since the last boundary and reads the
divergence record (``divergence.py``). Members at different steps train by step: the ones behind first, until
they reach the others. So a stacked member's rows, status and checkpoints are those of the run alone
(``tests/test_stacked_runs.py``), because they are made by the same code in the same order.
"""
from __future__ import annotations

import logging
import time

import torch

from experiments.runtime.preemption import NO_STOP

log = logging.getLogger("gradvar.vae")


class StepTimer:
    """Training seconds between the loop's boundaries, waiting for the device only there (not per step)."""

    def __init__(self, device: torch.device):
        self.device, self.started = device, None

    def start(self) -> None:
        self.started = time.perf_counter()

    def lap(self) -> float:
        """Seconds since ``start`` (0 if not started), once the device has finished the work queued since."""
        if self.started is None:
            return 0.0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds, self.started = time.perf_counter() - self.started, None
        return seconds


class Alone:
    """The stepper of a run trained alone: its own step, its own divergence record."""

    def __init__(self, run):
        self.run = run
        self.divergence = run.divergence

    def use(self, group: tuple[int, ...]) -> None:
        pass

    def pull(self, k: int, full: bool = False) -> None:
        pass  # the run's model, optimizer and estimator are the ones that train

    def train_step(self) -> None:
        self.run.train_step()


def train_runs(runs: list, stepper, stop=NO_STOP) -> list[str]:
    """Train every run to its end; returns each one's status (``completed``, ``diverged`` or ``preempted``).
    ``stop`` (``experiments.runtime.preemption``): a stop request ends every unfinished run after a checkpoint,
    as ``preempted``; only a job's entry point passes one that takes signals."""
    for run in runs:
        run.resume()
        run.write_status("running")
    status: list[str | None] = [None] * len(runs)
    timer = StepTimer(runs[0].device)

    def settle(members: tuple[int, ...]) -> None:
        """At a boundary: the training time since the last one, shared among the members that stepped, and the
        members that diverged since, ended ``diverged`` at the step where they did."""
        share = timer.lap() / max(1, len(members))
        for k in members:
            runs[k].train_seconds += share
        for k, (step, message) in stepper.divergence.read().items():
            if status[k] is None:
                runs[k].step = step
                runs[k].end_diverged(message)
                status[k] = "diverged"

    stepped: tuple[int, ...] = ()  # the members that trained since the last boundary
    while True:
        live = [k for k, s in enumerate(status) if s is None]
        if not live:
            break
        level = min(runs[k].step for k in live)
        group = tuple(k for k in live if runs[k].step == level)
        if stepped and (group != stepped or any(runs[k].at_boundary(stop) for k in group)):
            settle(stepped)
            stepped = ()
            continue  # members may have ended: the group is made again
        if not stepped:  # a boundary: evaluate, measure, end, stop or checkpoint, member by member
            for k in group:
                run = runs[k]
                if run.evaluated_step < run.step:
                    if run.due_evaluation():
                        stepper.pull(k)
                    run.evaluate_due()
                if run.step == int(run.config.train.steps):
                    stepper.pull(k, full=True)
                    run.checkpoint("completed")
                    status[k] = "completed"
            if stop.requested:
                for k in live:
                    if status[k] is None:
                        stepper.pull(k, full=True)
                        runs[k].checkpoint("preempted", signal=stop.requested)
                        status[k] = "preempted"
                log.warning("stopped by %s after checkpointing %d run(s) at step(s) %s; run again to resume",
                            stop.requested, status.count("preempted"),
                            sorted({runs[k].step for k, s in enumerate(status) if s == "preempted"}))
                break
            group = tuple(k for k in group if status[k] is None)
            if not group:
                continue
            for k in group:
                if runs[k].step % int(runs[k].config.checkpoint_every) == 0:
                    stepper.pull(k, full=True)
                    runs[k].checkpoint()
            stepper.use(group)
            timer.start()
        try:
            stepper.train_step()
        except (RuntimeError, ValueError):
            # An error from a member that had already diverged is that divergence; any other is raised.
            settle(group)
            if all(status[k] is None for k in group):
                raise
            stepped = ()
            continue
        for k in group:
            runs[k].step += 1
        stepped = group
    return [s or "completed" for s in status]
