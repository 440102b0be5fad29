r"""Adam, SGD and RMSprop, updating exactly as ``torch.optim`` does with its default options, without importing it.

Why not ``torch.optim`` itself: building or stepping any ``torch.optim`` optimizer imports ``torch._dynamo`` (the
compiler's front end, through ``torch._disable_dynamo`` on ``add_param_group`` and ``step``), about 1.05 s of
CPU in every process that trains. In the default study that was one seventh of a VAE job's CPU time, in 37
jobs. These classes do the same tensor operations in the same order as ``torch.optim``'s multi-tensor
("foreach") implementation, which on CPU gives the same bits as its default per-tensor one, and their
``state_dict`` has ``torch.optim``'s layout and values: a checkpoint written by either loads into the other.
``tests/test_optimizers.py`` checks both claims bit for bit, so a new torch that changes its updates fails
there, not silently in a study.

Only the options the studies use are offered (the learning rate); the others are ``torch.optim``'s defaults,
and they appear in ``param_groups`` as ``torch.optim`` writes them. With gradients :math:`g_t` at step
:math:`t = 1, 2, \dots`:

- **SGD**: :math:`\theta_t = \theta_{t-1} - \eta\, g_t`.
- **RMSprop** (Tieleman & Hinton 2012, lecture 6.5): :math:`v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2`,
  :math:`\theta_t = \theta_{t-1} - \eta\, g_t / (\sqrt{v_t} + \epsilon)`, with :math:`\alpha = 0.99`,
  :math:`\epsilon = 10^{-8}`.
- **Adam** (Kingma & Ba 2015, arXiv:1412.6980, Algorithm 1 with the bias corrections written out):
  :math:`m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t` (computed as ``lerp``),
  :math:`v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2`,
  :math:`\theta_t = \theta_{t-1} - \frac{\eta}{1 - \beta_1^t}\, m_t \big/ \big(\sqrt{v_t} / \sqrt{1 - \beta_2^t}
  + \epsilon\big)`, with :math:`\beta = (0.9, 0.999)`, :math:`\epsilon = 10^{-8}`.

A parameter without a gradient (``grad is None``) is skipped and its state left as it is, as in ``torch.optim``.
The step counts are CPU ``float32`` scalars, as ``torch.optim`` keeps them when it is not capturing CUDA graphs.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import Tensor

#: ``torch.optim``'s scalar dtype for step counts (``torch.optim.optimizer._get_scalar_dtype``) with a float32
#: default dtype.
STEP_DTYPE = torch.float32


class Optimizer:
    """One parameter group: ``params`` (tensors that require grad) and ``torch.optim``'s options for it.

    ``state_dict()`` / ``load_state_dict()`` are ``torch.optim``'s: ``{"state": {index: {name: tensor}},
    "param_groups": [{**options, "params": [index, ...]}]}``, tensors by reference (as torch returns them).
    """

    #: Per-parameter state tensors, in ``torch.optim``'s order (``step`` first where there is one).
    STATE: tuple[str, ...] = ()
    #: ``torch.optim``'s options for this optimizer, in its order, ``lr`` excepted.
    OPTIONS: dict = {}

    def __init__(self, params: Iterable[Tensor], lr: float):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not all(isinstance(p, Tensor) and p.requires_grad for p in params):
            raise TypeError("an optimizer takes tensors that require grad")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears more than once in the optimizer's list")
        self.params = params
        self.options = {"lr": float(lr), **copy.deepcopy(self.OPTIONS)}
        self.state: dict[int, dict[str, Tensor]] = {}  # by index into params, filled at a parameter's first step

    @property
    def lr(self) -> float:
        return self.options["lr"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        active = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not active:
            return
        for i in active:
            if self.STATE and i not in self.state:  # a stateless optimizer (SGD) keeps no entries, as torch's
                self.state[i] = self._new_state(self.params[i])
        self._update([self.params[i] for i in active], [self.params[i].grad for i in active],
                     [self.state.get(i, {}) for i in active])

    def _new_state(self, p: Tensor) -> dict[str, Tensor]:
        return {name: torch.tensor(0.0, dtype=STEP_DTYPE) if name == "step"
                else torch.zeros_like(p, memory_format=torch.preserve_format) for name in self.STATE}

    def _update(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Tensor]]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"state": dict(self.state),
                "param_groups": [{**self.options, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a ``state_dict`` of this optimizer or of its ``torch.optim`` namesake over the same parameters
        (copied: the dictionary given keeps its tensors); options other than ``lr`` must be the defaults."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or list(groups[0]["params"]) != list(range(len(self.params))):
            raise ValueError(f"the state has {len(groups)} parameter group(s) over other parameters than this "
                             f"optimizer's {len(self.params)}")
        group = {k: v for k, v in groups[0].items() if k != "params"}
        expected = {"lr": group.get("lr"), **self.OPTIONS}
        if group != expected:
            differ = sorted(k for k in set(group) | set(expected) if group.get(k) != expected.get(k))
            raise ValueError(f"the state's options differ from {type(self).__name__}'s in {', '.join(differ)}")
        state = {}
        for i, entry in state_dict["state"].items():
            i = int(i)
            if not 0 <= i < len(self.params) or set(entry) != set(self.STATE):
                raise ValueError(f"parameter {i}'s state has {sorted(entry)}, expected {list(self.STATE)}")
            p = self.params[i]
            state[i] = {name: entry[name].detach().clone() if name == "step"
                        else entry[name].detach().to(device=p.device, dtype=p.dtype, copy=True)
                        for name in self.STATE}
        self.options["lr"] = float(group["lr"])
        self.state = state


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD(params, lr)`` (no momentum, so no state)."""

    OPTIONS = {"momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False, "maximize": False,
               "foreach": None, "differentiable": False, "fused": None}

    def _update(self, params, grads, states):
        torch._foreach_add_(params, grads, alpha=-self.lr)


class RMSprop(Optimizer):
    """RMSprop, ``torch.optim.RMSprop(params, lr)``."""

    STATE = ("step", "square_avg")
    OPTIONS = {"momentum": 0, "alpha": 0.99, "eps": 1e-08, "centered": False, "weight_decay": 0,
               "capturable": False, "foreach": None, "maximize": False, "differentiable": False}

    def _update(self, params, grads, states):
        alpha, eps = self.OPTIONS["alpha"], self.OPTIONS["eps"]
        square_avgs = [s["square_avg"] for s in states]
        torch._foreach_add_([s["step"] for s in states], 1)
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, eps)
        torch._foreach_addcdiv_(params, grads, avg, value=-self.lr)


class Adam(Optimizer):
    """Adam, ``torch.optim.Adam(params, lr)``."""

    STATE = ("step", "exp_avg", "exp_avg_sq")
    OPTIONS = {"betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "amsgrad": False, "maximize": False,
               "foreach": None, "capturable": False, "differentiable": False, "fused": None,
               "decoupled_weight_decay": False}

    def _update(self, params, grads, states):
        (beta1, beta2), eps, lr = self.OPTIONS["betas"], self.OPTIONS["eps"], self.lr
        steps = [s["step"] for s in states]
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_add_(steps, 1)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        counts = [s.item() for s in steps]  # CPU scalars: no device sync
        step_sizes = [-(lr / (1 - beta1 ** t)) for t in counts]
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [(1 - beta2 ** t) ** 0.5 for t in counts])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)


#: The optimizers by the name a run config gives (``RunConfig.train.optimizer``).
OPTIMIZERS: dict[str, type[Optimizer]] = {"adam": Adam, "sgd": SGD, "rmsprop": RMSprop}
