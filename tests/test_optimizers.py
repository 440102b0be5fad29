"""estimators.optimizers updates bit for bit as torch.optim does, and their state dicts are interchangeable."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from estimators import optimizers
from estimators.optimizers import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]
TORCH = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}
SHAPES = [(16, 8), (16,), (), (3, 5, 2)]
LR = 3e-3


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in SHAPES]


def _clone(params) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def _set_grads(params, g: torch.Generator, step: int) -> None:
    for k, p in enumerate(params):
        skip = step % 4 == 1 and k == 1  # a parameter without a gradient now and then keeps its state
        p.grad = None if skip else torch.randn(p.shape, generator=g) * 10.0 ** (k - 2)


def _run(opts_and_params, steps: int, seed: int, check=None) -> None:
    """Step every (optimizer, params) with the same gradients; ``check`` after each step."""
    gens = [torch.Generator().manual_seed(seed) for _ in opts_and_params]
    for t in range(steps):
        for (opt, params), g in zip(opts_and_params, gens):
            _set_grads(params, g, t)
            opt.step()
            opt.zero_grad(set_to_none=True)
        if check is not None:
            check(t)


def _same_state_dict(a: dict, b: dict) -> bool:
    if a["param_groups"] != b["param_groups"] or set(a["state"]) != set(b["state"]):
        return False
    return all(set(a["state"][i]) == set(b["state"][i])
               and all(torch.equal(a["state"][i][k], b["state"][i][k])
                       and a["state"][i][k].dtype == b["state"][i][k].dtype for k in a["state"][i])
               for i in a["state"])


def _equal_params(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_step_equals_torch_optim_bit_for_bit(name, foreach):
    ours_p, theirs_p = _params(), _params()
    ours, theirs = OPTIMIZERS[name](ours_p, lr=LR), TORCH[name](theirs_p, lr=LR, foreach=foreach)
    differing = []
    _run([(ours, ours_p), (theirs, theirs_p)], 60, seed=1,
         check=lambda t: differing.append(t) if not _equal_params(ours_p, theirs_p) else None)
    assert differing == []
    expected = theirs.state_dict()
    for group in expected["param_groups"]:
        group["foreach"] = None  # the option asked of torch here, not a difference in the update
    assert _same_state_dict(ours.state_dict(), expected)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_state_dict_moves_between_torch_optim_and_ours_either_way(name):
    first, second = _params(), _params()
    ours, theirs = OPTIMIZERS[name](first, lr=LR), TORCH[name](second, lr=LR)
    _run([(ours, first), (theirs, second)], 9, seed=2)
    # Swap: torch's state into a fresh one of ours over its parameters, and ours into a fresh torch.optim.
    from_torch_p, to_torch_p = _clone(second), _clone(first)
    from_torch, to_torch = OPTIMIZERS[name](from_torch_p, lr=1.0), TORCH[name](to_torch_p, lr=1.0)
    from_torch.load_state_dict(theirs.state_dict())
    to_torch.load_state_dict(ours.state_dict())
    assert from_torch.lr == LR
    _run([(from_torch, from_torch_p), (to_torch, to_torch_p), (theirs, second)], 12, seed=3)
    assert _equal_params(from_torch_p, second) and _equal_params(to_torch_p, second)
    assert _same_state_dict(from_torch.state_dict(), theirs.state_dict())


def test_loading_copies_the_state():
    params = _params()
    opt = optimizers.Adam(params, lr=LR)
    _run([(opt, params)], 3, seed=4)
    saved = opt.state_dict()
    other = optimizers.Adam(_clone(params), lr=LR)
    other.load_state_dict(saved)
    before = saved["state"][0]["exp_avg"].clone()
    _run([(other, other.params)], 2, seed=5)
    assert torch.equal(saved["state"][0]["exp_avg"], before)


class _ReorderedAdam(optimizers.Adam):
    """The same Adam in exact arithmetic: the bias correction applied inside the square root."""

    def _update(self, params, grads, states):
        (beta1, beta2), eps, lr = self.OPTIONS["betas"], self.OPTIONS["eps"], self.lr
        for p, g, s in zip(params, grads, states):
            s["step"] += 1
            t = s["step"].item()
            s["exp_avg"].lerp_(g, 1 - beta1)
            s["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
            p.addcdiv_(s["exp_avg"], (s["exp_avg_sq"] / (1 - beta2 ** t)).sqrt().add_(eps),
                       value=-(lr / (1 - beta1 ** t)))


def test_meta_an_update_equal_only_in_exact_arithmetic_fails_the_comparison():
    ours_p, theirs_p = _params(), _params()
    ours, theirs = _ReorderedAdam(ours_p, lr=LR), torch.optim.Adam(theirs_p, lr=LR)
    _run([(ours, ours_p), (theirs, theirs_p)], 60, seed=1)
    assert not _equal_params(ours_p, theirs_p)
    assert max(float((a - b).detach().abs().max()) for a, b in zip(ours_p, theirs_p)) < 1e-5  # close, not equal


def test_other_options_in_a_state_are_refused_by_name():
    params = _params()
    theirs = torch.optim.Adam(params, lr=LR, amsgrad=True, eps=1e-6)
    with pytest.raises(ValueError, match="differ from Adam's in amsgrad, eps"):
        optimizers.Adam(_clone(params), lr=LR).load_state_dict(theirs.state_dict())
    with pytest.raises(ValueError, match="parameter group"):
        optimizers.Adam(_clone(params)[:2], lr=LR).load_state_dict(theirs.state_dict())


def test_bad_parameter_lists_are_refused():
    with pytest.raises(ValueError, match="empty"):
        optimizers.SGD([], lr=LR)
    with pytest.raises(TypeError, match="require grad"):
        optimizers.SGD([torch.zeros(2)], lr=LR)
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="more than once"):
        optimizers.SGD([p, p], lr=LR)


def test_training_with_them_does_not_import_the_compiler():
    code = ("import sys, torch; from estimators.optimizers import OPTIMIZERS\n"
            "p = torch.nn.Parameter(torch.ones(3))\n"
            "for make in OPTIMIZERS.values():\n"
            "    opt = make([p], lr=0.1); p.grad = torch.ones(3); opt.step(); opt.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False"
