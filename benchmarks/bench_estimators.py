"""Throughput of gradvar's estimators against hand-written plain-PyTorch versions, in the same run.

For each estimator on a fixed problem it prints gradient estimates per second (estimator call plus
backward) and the ratio ours / plain (1.0 = no overhead). Then the speed of ``measure_variance``
(vectorized and loop modes) against a naive Python loop of the plain estimator. The two sides of a ratio
are timed in interleaved rounds, the order swapped every other round (``benchmarks/timing.py``), and the
ratio is printed as min / median / max over the rounds, so how noisy a number is shows next to it.

    python benchmarks/bench_estimators.py [--device cpu|cuda] [--seconds 0.3] [--rounds 5]

Not a test: it asserts nothing, it prints numbers.
"""
from __future__ import annotations

import argparse
import statistics

import torch
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical

import estimators
from timing import interleaved, min_median_max, per_round  # benchmarks/timing.py

BATCH, DIM, N_SAMPLES, CLASSES, TAU = 64, 100, 8, 10, 0.5


def build(device, gen):
    loc = torch.randn(BATCH, DIM, device=device, generator=gen).requires_grad_(True)
    log_scale = torch.zeros(BATCH, DIM, device=device).requires_grad_(True)
    logits = torch.randn(BATCH, DIM, device=device, generator=gen).requires_grad_(True)
    cat_logits = torch.randn(BATCH, CLASSES, device=device, generator=gen).requires_grad_(True)
    target = torch.linspace(-1, 1, DIM, device=device)
    values = torch.linspace(0, 1, CLASSES, device=device)
    f_cont = lambda z: (z - target).pow(2).sum(-1)  # noqa: E731
    f_cat = lambda z: (z * values).sum(-1).pow(2)  # noqa: E731
    normal = lambda: Independent(Normal(loc, log_scale.exp()), 1)  # noqa: E731
    bern = lambda: Independent(Bernoulli(logits=logits), 1)  # noqa: E731
    return loc, log_scale, logits, cat_logits, f_cont, f_cat, normal, bern


def plain_versions(device, gen, parts):
    """Hand-written estimators: the formulas with no library around them."""
    loc, log_scale, logits, cat_logits, f_cont, f_cat, _, _ = parts
    grad = torch.autograd.grad
    shape = (N_SAMPLES, BATCH, DIM)

    def pathwise():
        z = loc + log_scale.exp() * torch.randn(shape, device=device, generator=gen)
        return grad(f_cont(z).mean(0).sum(), [loc, log_scale])

    def reinforce(kind):
        def step():
            scale = log_scale.exp()
            z = (loc + scale * torch.randn(shape, device=device, generator=gen)).detach()
            log_q = Normal(loc, scale).log_prob(z).sum(-1)
            fz = f_cont(z)
            if kind == "leave_one_out":
                b = (fz.sum(0, keepdim=True) - fz) / (N_SAMPLES - 1)
            elif kind == "weighted_leave_one_out":  # analytic scores of N(loc, scale) in (loc, scale)
                eps = (z - loc.detach()) / scale.detach()
                w = (eps.pow(2) / scale.detach().pow(2) + (eps.pow(2) - 1).pow(2) / scale.detach().pow(2)).sum(-1)
                b = ((fz * w).sum(0, keepdim=True) - fz * w) / (w.sum(0, keepdim=True) - w)
            else:
                b = 0.0
            return grad(((fz - b) * log_q).mean(0).sum(), [loc, log_scale])
        return step

    def straight_through():
        p = torch.sigmoid(logits)
        hard = torch.bernoulli(p.detach().expand(shape), generator=gen)
        return grad(f_cont(hard + p - p.detach()).mean(0).sum(), [logits])

    def gumbel(hard_forward):
        def step():
            u = torch.rand(shape, device=device, generator=gen).clamp(1e-38, 1 - 1e-7)
            y = torch.sigmoid((logits + u.log() - (-u).log1p()) / TAU)
            z = (y > 0.5).float() + y - y.detach() if hard_forward else y
            return grad(f_cont(z).mean(0).sum(), [logits])
        return step

    def exact():
        probs = torch.softmax(cat_logits, -1)
        fz = f_cat(torch.eye(CLASSES, device=device))  # [K]
        return grad((probs * fz).sum(), [cat_logits])

    return {
        "pathwise": pathwise, "reinforce(none)": reinforce("none"),
        "reinforce(leave_one_out)": reinforce("leave_one_out"),
        "reinforce(weighted_leave_one_out)": reinforce("weighted_leave_one_out"),
        "straight_through": straight_through, "gumbel_softmax": gumbel(False), "st_gumbel_softmax": gumbel(True),
        "exact": exact,
    }


def library_versions(device, gen, parts):
    loc, log_scale, logits, cat_logits, f_cont, f_cat, normal, bern = parts
    grad = torch.autograd.grad

    def run(name, dist_fn, f, params, **opts):
        est = estimators.get(name, **opts).to(device)
        return lambda: grad(est(f, dist_fn(), N_SAMPLES, gen).surrogate, params)

    cont, disc = [loc, log_scale], [logits]
    cat = lambda: OneHotCategorical(logits=cat_logits)  # noqa: E731
    return {
        "pathwise": run("pathwise", normal, f_cont, cont),
        "reinforce(none)": run("reinforce", normal, f_cont, cont),
        "reinforce(leave_one_out)": run("reinforce", normal, f_cont, cont, baseline="leave_one_out"),
        "reinforce(weighted_leave_one_out)": run("reinforce", normal, f_cont, cont,
                                                 baseline="weighted_leave_one_out"),
        "straight_through": run("straight_through", bern, f_cont, disc),
        "gumbel_softmax": run("gumbel_softmax", bern, f_cont, disc, temperature=TAU),
        "st_gumbel_softmax": run("st_gumbel_softmax", bern, f_cont, disc, temperature=TAU),
        "exact": run("exact", cat, f_cat, [cat_logits]),
    }


def compared(plain, ours, seconds: float, device, rounds: int) -> tuple[float, float, list[float]]:
    """Median rates (calls per second) of both sides and the per-round ratios ours / plain of the rates, the two
    sides timed in interleaved rounds, the order swapped every other round."""
    times = interleaved({"plain": plain, "ours": ours}, seconds, rounds, device)
    return (1 / statistics.median(times["plain"]), 1 / statistics.median(times["ours"]),
            per_round(times["plain"], times["ours"]))


def bench_variance(device, gen, seconds, rounds):
    """measure_variance vs a naive loop, on N(mu, I_D), f = sum z^2, R estimates of the mu-gradient."""
    dim, r = 10, 2000
    mu = torch.ones(dim, device=device, requires_grad=True)
    one = torch.ones(dim, device=device)
    problem = lambda m: ((lambda z: z.pow(2).sum(-1)), Independent(Normal(m, one.expand_as(m)), 1))  # noqa: E731

    def naive():
        rows = []
        for _ in range(r):
            z = (mu + torch.randn(N_SAMPLES, dim, device=device, generator=gen)).detach()
            log_q = Normal(mu, one).log_prob(z).sum(-1)
            rows.append(torch.autograd.grad((z.pow(2).sum(-1) * log_q).mean(), mu)[0])
        torch.stack(rows).var(0)

    est = estimators.get("reinforce").to(device)

    def naive_library():
        rows = []
        for _ in range(r):
            f, dist = problem(mu)
            rows.append(torch.autograd.grad(est(f, dist, N_SAMPLES, gen).surrogate, mu)[0])
        torch.stack(rows).var(0)

    ours = {
        "naive loop (gradvar estimator)": naive_library,
        "measure_variance loop": lambda: estimators.measure_variance(
            est, problem, [mu], n_estimates=r, n_samples=N_SAMPLES, generator=gen),
        "measure_variance vectorized": lambda: estimators.measure_variance(
            est, problem, [mu], n_estimates=r, n_samples=N_SAMPLES, generator=gen, vectorize=True),
    }
    print(f"\nmeasure_variance, REINFORCE, D={dim}, S={N_SAMPLES}, R={r} (estimates per second, medians; "
          f"ratio to the naive plain-torch loop timed in the same rounds: min / median / max over {rounds} rounds)")
    times = interleaved({"naive": naive, **ours}, seconds, rounds, device)
    base = 1 / statistics.median(times["naive"])
    for mode in ours:
        ratios = per_round(times["naive"], times[mode])
        print(f"  {mode:32s} {r / statistics.median(times[mode]):12.0f}  vs {base * r:10.0f}   "
              f"{min_median_max(ratios, '5.2f', 'x')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=0.3, help="timing window per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per ratio")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    gen = torch.Generator(device=device).manual_seed(0)
    parts = build(device, gen)
    plain, ours = plain_versions(device, gen, parts), library_versions(device, gen, parts)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"batch {BATCH} x dim {DIM}, {N_SAMPLES} samples per estimate")
    print(f"{'estimator':34s} {'plain /s':>10s} {'gradvar /s':>11s}   ratio min / median / max ({args.rounds} rounds)")
    for key in plain:
        p, o, ratios = compared(plain[key], ours[key], args.seconds, device, args.rounds)
        print(f"{key:34s} {p:10.0f} {o:11.0f}   {min_median_max(ratios, '5.2f', 'x')}")
    bench_variance(device, gen, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
