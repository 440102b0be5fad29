"""Stop requests: a long job that gets SIGTERM, SIGINT or SIGUSR1 finishes its current step instead of
dying, so it can checkpoint and exit cleanly.

Only a job's entry point (``python -m experiments.vae.train`` or ``...stacked``, as Snakemake or SLURM start
them) takes the signals, with ``with StopRequests() as stop:`` around the run, and hands ``stop`` to it; a run
called from other code (a test, a notebook) gets ``NO_STOP`` and leaves the caller's signals alone, so a
Ctrl-C there stops the caller as usual (``KeyboardInterrupt``). After the checkpoint, ``exit_stopped`` ends
the program: exit code 75 for a scheduler's signal (run it again to resume), death by SIGINT for SIGINT, so
an interactive Ctrl-C still ends what the user started.

SLURM sends SIGTERM to a preempted or timed-out job (and, with ``--signal=USR1@SECONDS``, SIGUSR1 that many
seconds earlier), then SIGKILL after its grace time; Ctrl-C sends SIGINT. A second signal of the same kind
while the first is being honoured acts as usual (the job ends at once), for a user who does not want to
wait.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

log = logging.getLogger("gradvar.preemption")

#: The exit code of a job that stopped on request after checkpointing (EX_TEMPFAIL: run it again to resume).
PREEMPTED_EXIT_CODE = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopRequests:
    """Context manager; ``requested`` is the name of the first signal received, or ``None``.

    Handlers can only be installed from the main thread; elsewhere (a job run inside another program's
    thread) signals keep their usual effect and ``requested`` stays ``None``.
    """

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.requested is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = signal.Signals(signum).name
        log.warning("received %s: stopping after the current step (send it again to stop at once)", self.requested)

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class NoStopRequests:
    """What a run called in-process gets: nothing is ever requested, no handler is installed."""

    requested: str | None = None


NO_STOP = NoStopRequests()


def exit_stopped(requested: str) -> None:
    """End a job that stopped on ``requested`` after its checkpoint: SIGINT (Ctrl-C) ends it as Ctrl-C ends a
    program (killed by SIGINT, so a shell or Snakemake sees an interrupt, not a failure code), any other signal
    with ``PREEMPTED_EXIT_CODE`` so that a scheduler runs it again."""
    if requested == "SIGINT":
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    sys.exit(PREEMPTED_EXIT_CODE)
