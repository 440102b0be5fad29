r"""The tensor kernels of stacked runs: N members' layers and optimizer states as one batched tensor each.

``StackedLinear`` and ``stacked_mlp`` run N copies of an MLP with member ``r``'s weights on member ``r``'s rows,
bit-identical per member to ``nn.Linear`` on CPU; ``stack_optimizer_states`` and ``member_optimizer_state``
convert between N optimizers' ``state_dict``s and one over the stacked parameters (Adam, SGD and RMSprop are
elementwise, so one optimizer over stacked parameters equals N). ``stacked.py`` orchestrates them.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class StackedLinear(torch.autograd.Function):
    r"""``y[r] = x[r] W[r]^T + b[r]``: ``x`` ``[N, R, a]``, ``W`` ``[N, b, a]``, ``b`` ``[N, b]`` -> ``[N, R, b]``.

    Per member, forward and backward compute what ``nn.Linear`` computes on ``[R, a]`` (``addmm`` forward;
    backward ``g W``, ``g^T x`` and ``g.sum(0)``), so on CPU each member's outputs and gradients equal the
    unstacked layer's bit for bit (tests/test_stacked_runs.py). The forward, ``g W`` and the bias are batched
    (``baddbmm``, ``bmm``, ``sum``: equal to the single calls on CPU at every size we tried); the weight's
    gradient ``g[r]^T x[r]`` is one ``mm`` per member on CPU, because ``bmm`` rounds it differently when the
    layer has few outputs (3, 6 or 10: a latent layer), and one ``bmm`` elsewhere (on CUDA the batched kernels
    differ from the single ones anyway). Autograd's own backward of ``baddbmm`` computes that gradient as the
    transposed product ``x^T g``, and ``matmul`` plus a separate bias add rounds the forward differently.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_t = grad.transpose(1, 2)
            grad_w = (torch.stack([grad_t[r].mm(x[r]) for r in range(x.shape[0])]) if x.device.type == "cpu"
                      else torch.bmm(grad_t, x))
        grad_b = grad.sum(1) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def stacked_mlp(h: Tensor, template: nn.Sequential, params: dict[str, Tensor]) -> Tensor:
    """``h`` ``[N, R, a]`` through ``template``'s layers with member ``r``'s weights ``params[name][r]``
    (``params[name]``: ``[N, *p.shape]`` for each ``name`` of ``template.named_parameters()``): ``[N, R, b]``.
    Linear layers are :class:`StackedLinear` (batched, bit-identical per member on CPU); the other layers of
    ``model.mlp`` are elementwise. (``VAE.replicated_posterior`` shares one ``x`` among copies of the encoder
    and rounds differently, so it is mirrored here rather than reused.)
    """
    for i, layer in enumerate(template):
        if isinstance(layer, nn.Linear):
            h = StackedLinear.apply(h, params[f"{i}.weight"], params[f"{i}.bias"])
        elif any(True for _ in layer.parameters()):
            raise TypeError(f"stacked runs support linear layers and parameter-free activations; "
                            f"layer {i} is a {type(layer).__name__} with parameters")
        else:
            h = layer(h)
    return h


def stack_optimizer_states(states: list[dict]) -> dict:
    """One ``state_dict`` of an optimizer over stacked parameters from the members' own: per-parameter tensors
    (``exp_avg``, momentum buffers, ...) are stacked, scalars (``step``) must agree."""
    first = states[0]
    for i, state in enumerate(states[1:], 1):
        if state["param_groups"] != first["param_groups"] or set(state["state"]) != set(first["state"]):
            raise RuntimeError(f"member {i}'s optimizer state does not match member 0's (different settings or steps)")
    stacked = {}
    for idx, entry in first["state"].items():
        stacked[idx] = {}
        for name, value in entry.items():
            values = [state["state"][idx][name] for state in states]
            if isinstance(value, Tensor) and value.dim() > 0:
                stacked[idx][name] = torch.stack(values)
            else:
                if not all(torch.equal(torch.as_tensor(v), torch.as_tensor(value)) for v in values):
                    raise RuntimeError(f"members disagree on the optimizer's {name!r} (they are at different steps)")
                stacked[idx][name] = copy.deepcopy(value)
    return {"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])}


def member_optimizer_state(stacked: dict, r: int) -> dict:
    """Member ``r``'s optimizer ``state_dict`` from a stacked one, in the format of a run alone."""
    state = {idx: {name: (value[r].clone() if isinstance(value, Tensor) and value.dim() > 0 else copy.deepcopy(value))
                   for name, value in entry.items()}
             for idx, entry in stacked["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(stacked["param_groups"])}
