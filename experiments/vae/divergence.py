r"""Where a training run diverged, recorded on the device: no host sync per step.

A step's divergence is a non-finite loss or, after the optimizer's update, a non-finite parameter. Asking the
host after every step ("is it finite?") costs one device-to-host sync per step, which on a GPU stalls the launch
queue every step. Instead each step *records* on the device, in a few elementwise operations and no sync, the
first step at which each run's loss or parameters became non-finite; the loop *reads* the record (one sync) at
its boundaries: before an evaluation, a variance measurement, a checkpoint, a stop and the end. So the step
recorded is exact (a NaN at step N reads as step N) although it is read later, and no evaluation row and no
checkpoint is ever written from a state past the divergence: the loop reads the record before each of them.

A diverged run keeps stepping on non-finite weights until the next boundary; those steps change nothing that is
kept (their state is dropped with the run), and sampling from non-finite probabilities does not raise
(``estimators.sampling``'s categorical draw reads a NaN row as uniform).

The record holds ``members`` runs (one for ``Run``, N for ``StackedRuns``): ``step[r]`` is the first bad step
of run ``r`` (-1 while none), ``kind[r]`` what went bad (``LOSS`` or ``PARAMETERS``) and ``loss[r]`` the loss at
that step.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

NONE, LOSS, PARAMETERS = 0, 1, 2


def parameters_finite(tensors: list[Tensor], members: int | None = None) -> Tensor:
    """Whether every tensor is finite, per member: one sum per tensor (a NaN or inf anywhere makes its sum
    non-finite, as would weights so large that their sum overflows, which is divergence too). ``members``:
    the tensors are stacked ``[members, ...]`` and the result is ``[members]``; else ``[1]``. Checking each
    element instead cost 8-13% of a paper-size step (benchmarks/bench_vae_step.py)."""
    if members is None:
        return torch.stack([t.detach().sum() for t in tensors]).isfinite().all().reshape(1)
    return torch.stack([t.detach().reshape(members, -1).sum(1) for t in tensors]).isfinite().all(0)


class DivergenceRecord:
    """The first non-finite step of each of ``members`` runs, kept on ``device`` (see the module)."""

    def __init__(self, members: int, device: torch.device):
        self.step = torch.full((members,), -1, dtype=torch.long, device=device)
        self.kind = torch.zeros(members, dtype=torch.long, device=device)
        self.loss = torch.full((members,), math.nan, dtype=torch.float64, device=device)

    def record(self, step: int, loss: Tensor, params_ok: Tensor, index: Tensor | None = None) -> None:
        """Record step ``step`` of the runs ``index`` (default: all): ``loss`` and ``params_ok`` ``[len(index)]``.
        Device operations only; nothing waits for the device."""
        loss = loss.detach().to(self.loss.dtype)
        kind = torch.where(loss.isfinite(), torch.where(params_ok, NONE, PARAMETERS), LOSS)
        old_step = self.step if index is None else self.step[index]
        new = (kind != NONE) & (old_step < 0)
        updates = (torch.where(new, step, old_step),
                   torch.where(new, kind, self.kind if index is None else self.kind[index]),
                   torch.where(new, loss, self.loss if index is None else self.loss[index]))
        for held, value in zip((self.step, self.kind, self.loss), updates):
            if index is None:
                held.copy_(value)
            else:
                held.index_copy_(0, index, value)

    def read(self) -> dict[int, tuple[int, str]]:
        """``{run: (step, message)}`` for the runs that diverged (one sync)."""
        steps, kinds, losses = torch.stack([self.step.double(), self.kind.double(), self.loss]).tolist()
        out = {}
        for r, (step, kind, loss) in enumerate(zip(steps, kinds, losses)):
            if step >= 0:
                step = int(step)
                out[r] = (step, f"loss is {loss} at step {step}" if kind == LOSS
                          else f"parameters became non-finite at step {step}")
        return out
