"""An estimator that trains its own parameters (a learned control variate) with its own Adam optimizer, whose
state travels in ``state_dict`` (as extra state), so a run resumed from a checkpoint continues bit for bit."""
from __future__ import annotations

import torch

from estimators.optimizers import Adam, Optimizer


class OwnOptimizer:
    """Mixin for an ``Estimator`` with ``self.lr`` and ``self._optimizer`` (``None`` until the first train-mode
    call); list it before ``Estimator`` among the bases."""

    def _own_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.parameters())

    def _ensure_optimizer(self) -> Optimizer:
        if self._optimizer is None:
            self._optimizer = Adam(self._own_parameters(), lr=self.lr)
        return self._optimizer

    def get_extra_state(self) -> dict:
        return {"optimizer": None if self._optimizer is None else self._optimizer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self._optimizer = None
        if state.get("optimizer") is not None:
            self._ensure_optimizer().load_state_dict(state["optimizer"])
