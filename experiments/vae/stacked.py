r"""Stacked runs: train N runs of one cell (configs equal but for the seed) as one batched model in one process.

    python -m experiments.vae.stacked --config A.json --config B.json --out DIR_A --out DIR_B
    python -m experiments.vae.stacked --config C.yaml --seeds 0 1 2 --out 'results/demo/seed{seed}' \
        [--set KEY=VALUE ...] [--one-after-another]

Each member is a :class:`~experiments.vae.train.Run` (its data, minibatch order, binarization stream, ids,
tables, ``status.json``, checkpoints, evaluation and variance measurement are the Run's own code) and the
loop is the one a run alone goes through (``lifecycle.train_runs``); only the training step is shared: this
module is the loop's *stepper* for a stack, and ``stacked_kernels.py`` holds its tensor kernels. With ``N``
members the parameters are stacked, ``p[N, *shape]``, and a step is:

- ``x[r] = runs[r].batch(step)``: ``[N, B, D]``, each member's own minibatch and binarization draw;
- the encoder and decoder with stacked weights: every ``nn.Linear`` becomes a batched ``StackedLinear``
  (``baddbmm``), per member the BLAS calls of ``nn.Linear`` (bit-identical on CPU, forward and backward);
- one estimator call on the stacked posterior, batch ``[N, B]`` (or its K-tuples under ``objective.bound:
  iwae``, as ``objectives.problem``), with a ``sampling.GeneratorStack`` of the members' training generators:
  member ``r``'s noise is what it would draw alone, bit for bit;
- ``loss = sum_r loss_r``: the graph never mixes members, so member ``r``'s gradient is its own;
- one optimizer over the stacked parameters: Adam, SGD and RMSprop are elementwise, so this equals N separate
  optimizers (they share only the step count, which equal steps make equal).

Before a member evaluates, measures variance or checkpoints, its slices are copied into its ``Run.model``,
its optimizer state into its ``Run.opt`` (in the format of a run alone) and the estimator's state into its
``Run.est``: its ``resume_STEP.pt`` is a normal Run checkpoint. So a killed stacked job resumes every member,
a member can be resumed alone (``experiments.vae.train``) and a run started alone can join a stack; members
at different steps are stacked by step (the ones behind train together until they reach the others).

Equality with runs alone. On CPU, a member's metrics, variance rows and weights equal those of the same run
trained alone to the last bit here (tests/test_stacked_runs.py: digits, 30 steps, pathwise, reinforce
leave_one_out, gumbel_softmax, straight_through, and on the IWAE bound vimco and pathwise on K-tuples; the
tests assert the tolerance); the stated tolerance, for other BLAS builds and
thread counts whose kernels may block a batched matmul differently from a single one, is 1e-4 relative on
the metrics after a few dozen steps (discrete samples then still agree unless a probability falls within a
rounding error of a uniform draw). On CUDA the batched kernels differ from the single ones: expect agreement
to that tolerance, not bits. An interrupted stacked job resumed ends bit-identical to an uninterrupted one
(on CPU), as a Run does.

A member that diverges (its loss or parameters non-finite) ends ``diverged`` at its step with its tables and
status exactly as a run alone, and the others go on (nothing in the graph mixes members). Its divergence is
recorded on the device per member and read at the loop's boundaries (``divergence.py``: no host sync per
step); the stack is then made again without it. Preemption (SIGTERM, SIGINT,
SIGUSR1) checkpoints every unfinished member (``preempted``) and exits 75, as ``train``. A finished member is
not run again.

What cannot be stacked is refused with one line: an estimator whose state adapts across calls (``adapts``:
moving-average baselines, REBAR/RELAX) or whose randomness does not go through ``estimators.sampling``
(``Capabilities.stackable``), an NVIL learned baseline (a trained network of its own), configs that differ in
anything but ``seed`` (and the ``fault`` test aid). ``--one-after-another`` trains any cell's runs in this
process one after another instead, each exactly as alone (a study's ``vae.sequential_seeds``).
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.nn import functional as F

from estimators.optimizers import OPTIMIZERS, Optimizer
from estimators.sampling import GeneratorStack

from experiments.runtime import jobtime
from experiments.runtime.cli import checked, failures_as_one_line, run_job
from experiments.runtime.preemption import NO_STOP, StopRequests, exit_stopped
from experiments.vae import objectives
from experiments.vae.run_config import RunConfig, as_dict
from experiments.vae.divergence import DivergenceRecord, parameter_sums
from experiments.vae.lifecycle import train_runs
from experiments.vae.run_folder import finished
from experiments.vae.stacked_kernels import member_optimizer_state, stack_optimizer_states, stacked_mlp
from experiments.vae.run_config import load_config
from experiments.vae.train import Run, train

log = logging.getLogger("gradvar.vae.stacked")

#: Top-level config keys in which the members may differ: the seed, and the fault-injection test aid.
PER_RUN_KEYS = ("seed", "fault")


def _first_difference(a, b, path: str = "") -> str | None:
    """The dotted path of the first key where two config dicts differ, or ``None``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                return where
            found = _first_difference(a[key], b[key], where)
            if found is not None:
                return found
        return None
    return None if a == b else (path or "<config>")


def check_stackable(configs: list[RunConfig]) -> None:
    """Raise a one-line ValueError when ``configs`` cannot be trained as one stack."""
    if not configs:
        raise ValueError("stacked runs need at least one config")
    first = {k: v for k, v in as_dict(configs[0]).items() if k not in PER_RUN_KEYS}
    for i, config in enumerate(configs[1:], 1):
        other = {k: v for k, v in as_dict(config).items() if k not in PER_RUN_KEYS}
        key = _first_difference(first, other)
        if key is not None:
            raise ValueError(f"stacked runs must have equal configs except {', '.join(PER_RUN_KEYS)}; "
                             f"run {i} differs from run 0 in {key!r}")
    reason = configs[0].estimator_spec.why_not_stacked()
    if reason is not None:
        raise ValueError(reason)


class StackedRuns:
    """N ``Run``s of configs equal but for the seed, trained as one batched model (see the module)."""

    def __init__(self, configs: list[RunConfig], outs: list[Path]):
        configs, outs = list(configs), [Path(o) for o in outs]
        if len(configs) != len(outs):
            raise ValueError(f"stacked runs need one out folder per config; "
                             f"got {len(configs)} configs and {len(outs)} outs")
        if len({o.resolve() for o in outs}) != len(outs):
            raise ValueError("stacked runs need distinct out folders")
        check_stackable(configs)
        first = Run(configs[0], outs[0])
        # Equal configs name the same data: one copy in memory, not N.
        self.runs = [first] + [Run(c, o, data=first.data) for c, o in zip(configs[1:], outs[1:])]
        self.config = configs[0]
        self.device = first.device
        self.template = first.model  # shapes, layers and the latent family (its weights are member 0's)
        self.names = [name for name, _ in self.template.named_parameters()]
        self.est = self.config.estimator_spec.build().to(self.device)  # the stack's; members' copies are synced
        self.group: tuple[int, ...] = ()  # the members in the stack, in stack order
        self.params: list[Tensor] = []
        self.opt: Optimizer | None = None
        self.gens: GeneratorStack | None = None
        self._pulled: dict[int, int] = {}  # member -> 1 (model and estimator) or 2 (and optimizer) copied out
        self.divergence = DivergenceRecord(len(self.runs), self.device)  # indexed by member, not stack position
        self._group_index = torch.zeros(0, dtype=torch.long, device=self.device)

    # --- moving state between the stack and the members' Runs ----------------------------------------
    def use(self, group: tuple[int, ...]) -> None:
        """Make ``group`` the stack, copying the previous stack's live members back to their Runs first."""
        if group == self.group:
            return
        for k in self.group:
            self.pull(k, full=True)
        runs = [self.runs[k] for k in group]
        self.params = [torch.stack([p.detach() for p in ps]).requires_grad_(True)
                       for ps in zip(*(run.model.parameters() for run in runs))]
        self.opt = OPTIMIZERS[self.config.train.optimizer](self.params, lr=self.config.train.lr)
        self.opt.load_state_dict(stack_optimizer_states([run.opt.state_dict() for run in runs]))
        est_state = runs[0].est.state_dict()
        for k, run in zip(group[1:], runs[1:]):
            other = run.est.state_dict()
            if other.keys() != est_state.keys() or not all(_same(other[n], est_state[n]) for n in est_state):
                raise RuntimeError(f"{run.out}: its estimator state differs from {runs[0].out}'s at the same step")
        self.est.load_state_dict(est_state)
        self.est.train(runs[0].est.training)
        self.gens = GeneratorStack([run.gen for run in runs])  # the members' own generators, advanced in place
        self.group = group
        self._group_index = torch.tensor(group, dtype=torch.long, device=self.device)
        self._pulled = {k: 2 for k in group}

    def pull(self, k: int, full: bool = False) -> None:
        """Copy member ``k``'s slice of the stack into its Run: weights and estimator state, and with ``full``
        its optimizer state (what a checkpoint holds)."""
        need = 2 if full else 1
        if k not in self.group or self._pulled.get(k, 0) >= need:
            return
        r = self.group.index(k)
        run = self.runs[k]
        with torch.no_grad():
            for p, stacked in zip(run.model.parameters(), self.params):
                p.copy_(stacked[r])
        run.est.load_state_dict(self.est.state_dict())
        if full:
            run.opt.load_state_dict(member_optimizer_state(self.opt.state_dict(), r))
        self._pulled[k] = need

    # --- the stacked model -----------------------------------------------------------------------------
    def _params(self, prefix: str) -> dict[str, Tensor]:
        return {name[len(prefix):]: p for name, p in zip(self.names, self.params) if name.startswith(prefix)}

    def posterior(self, x: Tensor) -> Distribution:
        """q(z | x[r]) under member ``r``'s encoder: ``x`` ``[N, B, D]``, batch_shape ``[N, B]``."""
        return self.template.posterior_from_outputs(stacked_mlp(x, self.template.encoder, self._params("encoder.")))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x[r] | z[:, r]) under member ``r``'s decoder: ``x`` ``[N, B, D]``, ``z`` ``[n, N, B, *event]`` ->
        ``[n, N, B]`` (``VAE.log_likelihood`` per member; each member's rows in the order it uses alone)."""
        n, runs, batch = z.shape[:3]
        flat = z.reshape(n, runs, batch, -1).transpose(0, 1).reshape(runs, n * batch, -1)
        logits = stacked_mlp(flat, self.template.decoder, self._params("decoder."))
        logits = logits.reshape(runs, n, batch, -1).transpose(0, 1)
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def problem(self, x: Tensor, q: Distribution):
        """``(f, dist, exact_term, exact_per_member)``: ``objectives.problem`` with the members stacked
        (``f`` ``[n, N, B, *event] -> [n, N, B]``, ``dist`` of batch ``[N, B]``) and this stack's decoder in
        place of ``VAE.log_likelihood``; ``exact_per_member`` ``[N]`` splits the exact term by member."""
        objective = self.config.objective
        f, dist, exact_term = objectives.problem(self.template, x, q, self.est, objective, self.log_likelihood)
        exact = objective.bound == "elbo" and objective.kl == "exact"
        per = -self.template.kl(q).sum(-1) if exact else torch.zeros(x.shape[0], device=x.device)
        return f, dist, exact_term, per

    # --- one step --------------------------------------------------------------------------------------
    def train_step(self) -> None:
        """One step of every member of the stack (all at the same step). Each member's divergence is recorded on
        the device (``self.divergence``, indexed by member), read by the loop at its boundaries."""
        runs = [self.runs[k] for k in self.group]
        step = runs[0].step
        x = torch.stack([run.batch(step) for run in runs])  # [N, B, D]: each member's own minibatch and draws
        q = self.posterior(x)
        f, dist, exact_term, exact_per = self.problem(x, q)
        out = self.est(f, dist, int(self.config.n_samples), self.gens)
        loss = -(out.surrogate + exact_term) / x.shape[1]
        # Each member's loss as it computes it alone (f's mean over samples, summed over its batch); the fault
        # injection makes one member's loss NaN, as Run.train_step does. Nothing in the graph mixes members, so a
        # member's non-finite terms reach only its own slices; a non-finite term outside f's values (a score
        # term) makes its gradient, then its parameters, non-finite at this same step.
        per = -(out.value.mean(0).sum(-1) + exact_per) / x.shape[1]
        faults = [run.config.fault.nan_at_step == step for run in runs]
        if any(faults):
            per = per * torch.tensor([math.nan if bad else 1.0 for bad in faults], dtype=per.dtype, device=per.device)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.divergence.record(step, per, parameter_sums(self.params, len(runs)), self._group_index)
        self._pulled = {}

    # --- the loop ------------------------------------------------------------------------------------
    def run(self, stop=NO_STOP) -> list[str]:
        """Train every member to the end through the one loop (``lifecycle.train_runs``), this stack stepping
        them; ``stop`` as there."""
        return train_runs(self.runs, self, stop)


def _same(a, b) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def train_stacked(configs: list[RunConfig], outs: list[Path], stop=NO_STOP) -> list[str]:
    """Train the runs as one stack (``StackedRuns``); members already finished are not run again. Returns
    each member's status."""
    outs = [Path(o) for o in outs]
    check_stackable(list(configs))
    statuses: list[str | None] = []
    for config, out in zip(configs, outs):
        out.mkdir(parents=True, exist_ok=True)
        statuses.append(finished(config, out))
        if statuses[-1] is not None:
            log.info("%s already finished (%s); nothing to do", out, statuses[-1])
    todo = [i for i, s in enumerate(statuses) if s is None]
    if todo:
        results = StackedRuns([configs[i] for i in todo], [outs[i] for i in todo]).run(stop)
        for i, status in zip(todo, results):
            statuses[i] = status
    return statuses


def train_one_after_another(configs: list[RunConfig], outs: list[Path], stop=NO_STOP) -> list[str]:
    """Train the runs in this process one after another, each as ``experiments.vae.train`` does alone (a cell
    whose estimator cannot be stacked: one start-up for its seeds, not one each). A run asked to stop is
    ``preempted`` and the runs after it are not started (``preempted`` too: the rerun resumes them)."""
    statuses: list[str] = []
    for config, out in zip(configs, outs):
        if statuses and statuses[-1] == "preempted":
            statuses.append("preempted")
            continue
        Path(out).mkdir(parents=True, exist_ok=True)
        statuses.append(train(config, Path(out), stop))
    return statuses


def main(argv=None) -> None:
    jobtime.mark_started("vae_train_stacked")
    ap = argparse.ArgumentParser(description="Train N runs of one cell (configs equal but for the seed) as one "
                                             "batched model")
    ap.add_argument("--config", action="append", default=[],
                    help="run config, YAML or JSON, once per run (or once with --seeds; default: all defaults)")
    ap.add_argument("--out", action="append", required=True,
                    help="run folder, once per run (with --seeds: one pattern with {seed}, or one per seed)")
    ap.add_argument("--seeds", type=int, nargs="+", help="the seeds of one config (one run each)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config entry of every run, e.g. --set train.steps=500 (repeatable)")
    ap.add_argument("--one-after-another", action="store_true",
                    help="train the runs one after another in this process instead of as one batched model "
                         "(any estimator; vae.sequential_seeds)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.seeds:
        if len(args.config) > 1:
            ap.error("--seeds takes at most one --config")
        path = args.config[0] if args.config else None
        configs = [checked(ap, load_config, path, [*args.set, f"seed={seed}"]) for seed in args.seeds]
        if len(args.out) == 1 and "{seed}" in args.out[0]:
            outs = [Path(args.out[0].format(seed=seed)) for seed in args.seeds]
        else:
            outs = [Path(o) for o in args.out]
    else:
        configs = [checked(ap, load_config, path, args.set) for path in args.config]
        outs = [Path(o) for o in args.out]
    if len(configs) != len(outs):
        ap.error(f"got {len(configs)} runs and {len(outs)} --out folders; give one per run")
    with failures_as_one_line(ap), StopRequests() as stop:
        try:
            statuses = (train_one_after_another if args.one_after_another else train_stacked)(configs, outs, stop)
        except ValueError as err:  # refused: not stackable
            ap.exit(2, f"error: {err}\n")
    for out, status in zip(outs, statuses):
        log.info("run %s: %s", out, status)
    if "preempted" in statuses:
        exit_stopped(stop.requested)


if __name__ == "__main__":
    run_job(main)
