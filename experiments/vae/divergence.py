r"""Where a training run diverged, recorded on the device: no host sync per step.

A step's divergence is a non-finite loss or, after the optimizer's update, a non-finite parameter. Asking the
host after every step ("is it finite?") costs one device-to-host sync per step, which on a GPU stalls the launch
queue every step. Instead each step *records* its loss and one sum of its parameters per run (device tensors
that nothing waits for: the step appends them to a list, no operation of its own), and the record finds, at its
next read, the first step at which each run's loss or parameters became non-finite, in a few operations over
all the steps since the last read. The loop *reads* the record (one sync) at its boundaries: before an
evaluation, a variance measurement, a checkpoint, a stop and the end. So the step recorded is exact (a NaN at
step N reads as step N) although it is read later, and no evaluation row and no checkpoint is ever written from
a state past the divergence: the loop reads the record before each of them. (Deciding each step's verdict as it
was recorded cost a dozen operations a step, 70 us of an 18 ms paper-size step on CPU, a dozen kernel launches
on a GPU.)

A diverged run keeps stepping on non-finite weights until the next boundary; those steps change nothing that is
kept (their state is dropped with the run), and sampling from non-finite probabilities does not raise
(``estimators.sampling``'s categorical draw reads a NaN row as uniform).

The record holds ``members`` runs (one for ``Run``, N for ``StackedRuns``): ``step[r]`` is the first bad step
of run ``r`` (-1 while none), ``kind[r]`` what went bad (``LOSS`` or ``PARAMETERS``) and ``loss[r]`` the loss at
that step.
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

NONE, LOSS, PARAMETERS = 0, 1, 2


def parameter_sums(tensors: list[Tensor], members: int | None = None) -> Tensor:
    """One sum of every parameter per member, ``[members]`` for tensors stacked ``[members, ...]``, else ``[1]``:
    a NaN or inf anywhere makes it non-finite, as would weights so large that their sum overflows, which is
    divergence too. Checking each element instead cost 8-13% of a paper-size step (benchmarks/bench_vae_step.py)."""
    if members is None:
        return torch.stack([t.detach().sum() for t in tensors]).sum().reshape(1)
    return torch.stack([t.detach().reshape(members, -1).sum(1) for t in tensors]).sum(0)


class DivergenceRecord:
    """The first non-finite step of each of ``members`` runs, kept on ``device`` (see the module)."""

    #: Steps kept before they are reduced into the record without a read (bounds memory between boundaries).
    MAX_PENDING = 4096

    def __init__(self, members: int, device: torch.device):
        self.step = torch.full((members,), -1, dtype=torch.long, device=device)
        self.kind = torch.zeros(members, dtype=torch.long, device=device)
        self.loss = torch.full((members,), math.nan, dtype=torch.float64, device=device)
        self._pending: list[tuple[int, Tensor, Tensor, Tensor | None]] = []

    def record(self, step: int, loss: Tensor, param_sums: Tensor, index: Tensor | None = None) -> None:
        """Record step ``step`` of the runs ``index`` (default: all): ``loss`` and ``param_sums``
        (``parameter_sums``) ``[len(index)]``. Nothing is computed and nothing waits for the device."""
        self._pending.append((step, loss.detach(), param_sums, index))
        if len(self._pending) >= self.MAX_PENDING:
            self._reduce()

    def _reduce(self) -> None:
        """Fold the pending steps into ``step``/``kind``/``loss``: per run of steps that recorded the same members,
        the first step whose loss (else parameters) is non-finite."""
        pending, self._pending = self._pending, []
        for _, entries in itertools.groupby(pending, key=lambda entry: id(entry[3])):
            self._fold(list(entries))

    def _fold(self, entries: list[tuple[int, Tensor, Tensor, Tensor | None]]) -> None:
        index = entries[0][3]
        loss = torch.stack([e[1] for e in entries]).to(self.loss.dtype)             # [T, m]
        sums = torch.stack([e[2] for e in entries])                                 # [T, m]
        kind = torch.where(loss.isfinite(), torch.where(sums.isfinite(), NONE, PARAMETERS), LOSS)
        bad = kind != NONE
        first = bad.to(torch.uint8).argmax(0, keepdim=True)                         # [1, m]: the first bad step
        steps = torch.tensor([e[0] for e in entries], dtype=torch.long).to(self.step.device)
        held = (self.step, self.kind, self.loss) if index is None else (
            self.step[index], self.kind[index], self.loss[index])
        new = bad.any(0) & (held[0] < 0)
        updates = (torch.where(new, steps[first[0]], held[0]),
                   torch.where(new, kind.gather(0, first)[0], held[1]),
                   torch.where(new, loss.gather(0, first)[0], held[2]))
        for target, value in zip((self.step, self.kind, self.loss), updates):
            if index is None:
                target.copy_(value)
            else:
                target.index_copy_(0, index, value)

    def read(self) -> dict[int, tuple[int, str]]:
        """``{run: (step, message)}`` for the runs that diverged (one sync)."""
        self._reduce()
        steps, kinds, losses = torch.stack([self.step.double(), self.kind.double(), self.loss]).tolist()
        out = {}
        for r, (step, kind, loss) in enumerate(zip(steps, kinds, losses)):
            if step >= 0:
                step = int(step)
                out[r] = (step, f"loss is {loss} at step {step}" if kind == LOSS
                          else f"parameters became non-finite at step {step}")
        return out
