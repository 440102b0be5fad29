"""Wall time of one full VAE training step, gradvar's against a hand-written plain-PyTorch step, in the same run.

A step is: a minibatch of 100 binarized inputs, the encoder, the estimator's samples and surrogate, the
decoder (the Bernoulli log-likelihood), the exact KL term, backward, and an Adam step. For every registered
estimator that applies to the latent family (``est.why_not(q, n_samples, objective="expectation")``; the
others are listed with the reason) it times three sides, interleaved round by round:

- ``plain``: the same math written directly in PyTorch (only for the estimators where that is short:
  pathwise, reinforce with each baseline, straight_through, gumbel_softmax, st_gumbel_softmax, arm, disarm);
  it takes its minibatch from a permutation drawn once per epoch, as a DataLoader does, and draws Bernoulli
  variables (data and latents) as ``u < p``, the way gradvar does;
- ``core``: ``Run.train_step``'s code path (``VAE.posterior``, ``VAE.objective``, the estimator from
  ``estimators.get``, ``estimators.optimizers.Adam``, what Run uses) fed by the same minibatches as ``plain``;
- ``Run``: the real ``experiments.vae.train.Run.train_step`` of a ``Run`` built from a ``RunConfig`` (the
  paper presets from ``run_config.PRESETS``), whose data set is swapped for random intensities (uniform, with a
  fixed ``torch.Generator``; binarized per minibatch as the real runs do) of the real
  data set's size, so no data file is read. It includes what a real step does on top of ``core``: its own
  minibatch selection and the divergence checks on the loss and every parameter.

Each side starts from the same weights. A round times every side over a short window (a few steps), the
order reversed every other round; many short rounds rather than a few long ones, because the noise on this
kind of machine drifts over seconds and a ratio taken within one round cancels the drift. ``Run/plain`` is the
median over rounds of the per-round ratio, printed with the per-round min / median / max of the ratio; the ms
columns are median seconds per step. The issue's target is at most 3% overhead at the paper sizes: medians
above 1.03 are flagged. Sizes: ``digits`` (64 inputs, hidden [128] relu, Gaussian(8), Bernoulli(8), categorical
4x4 as in the digits study) and ``paper`` (784 inputs: kingma2013 Gaussian(20), hidden [500] tanh; jang2017
Bernoulli(200) and categorical 20x10, hidden [512, 256] relu). ``n_samples`` is 4, except arm and disarm
whose samples are antithetic pairs: 2 pairs, 4 evaluations of ``f``. Where storchastic is importable its
REINFORCE with the leave-one-out baseline (``ScoreFunction``, ``baseline_factory="batch_average"``) is timed
too.

    python benchmarks/bench_vae_step.py [--device cpu|cuda] [--threads 1] [--sizes digits paper]
        [--latents kingma2013 jang2017_bernoulli ...] [--estimators pathwise reinforce_loo ...]
        [--seconds S] [--rounds R] [--quick]

Not a test: it asserts nothing, it prints numbers.
"""
from __future__ import annotations

import argparse
import copy
import gc
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import estimators  # noqa: E402
from estimators.optimizers import Adam  # noqa: E402
from experiments.vae import data as data_mod  # noqa: E402
from experiments.vae.model import VAE  # noqa: E402
from experiments.vae.run_config import PRESETS, resolve  # noqa: E402
from experiments.vae import objectives  # noqa: E402
from experiments.vae.train import Run  # noqa: E402
from random_data import random_dataset, serving  # noqa: E402  (benchmarks/random_data.py)
from timing import interleaved, median_ratio, min_median_max, per_round  # noqa: E402  (benchmarks/timing.py)

BATCH, N_SAMPLES, TARGET = 100, 4, 1.03


#: Sizes: the data set a Run is configured with (its loader is replaced by random data of this shape), and
#: the config layers of each latent (a preset of run_config.PRESETS, or the digits study's latents).
SIZES = {
    "digits": {"dataset": "digits", "x_dim": 64, "n_train": 1500, "latents": {
        "gaussian(8)": {"latent": {"family": "gaussian", "dim": 8}},
        "bernoulli(8)": {"latent": {"family": "bernoulli", "dim": 8}},
        "categorical(4x4)": {"latent": {"family": "categorical", "groups": 4, "classes": 4}},
    }},
    "paper": {"dataset": "mnist", "x_dim": 784, "n_train": 60000,
              "latents": {name: {"preset": name} for name in PRESETS}},
}
#: Default (seconds per timing window, rounds) per size; --seconds/--rounds override both; --quick is a smoke run.
TIMING = {"digits": (0.02, 30), "paper": (0.05, 30)}
QUICK_TIMING = {"digits": (0.01, 2), "paper": (0.02, 2)}

#: (row id, registered name, options): the study's configurations (config/config.yaml, relaxations at a
#: constant temperature 0.5). A registered estimator missing here gets a row with its default options.
ROWS = [
    ("pathwise", "pathwise", {}),
    ("reinforce", "reinforce", {"baseline": "none"}),
    ("reinforce_ma", "reinforce", {"baseline": "moving_average", "decay": 0.99}),
    ("reinforce_loo", "reinforce", {"baseline": "leave_one_out"}),
    ("reinforce_wloo", "reinforce", {"baseline": "weighted_leave_one_out"}),
    ("straight_through", "straight_through", {}),
    ("gumbel", "gumbel_softmax", {"temperature": 0.5}),
    ("st_gumbel", "st_gumbel_softmax", {"temperature": 0.5}),
    ("arm", "arm", {}),
    ("disarm", "disarm", {}),
    ("exact", "exact", {}),
    ("muprop", "muprop", {}),
    ("rebar", "rebar", {}),
    ("relax", "relax", {}),
    ("gumbel_rao", "gumbel_rao", {"temperature": 0.5, "k": 10}),
    ("reinmax", "reinmax", {"temperature": 1.0}),
    ("measure_valued", "measure_valued", {}),
    ("reinforce_delta", "reinforce_delta", {}),
    ("vimco", "vimco", {}),
]
PLAIN = ("pathwise", "reinforce", "reinforce_ma", "reinforce_loo", "reinforce_wloo", "straight_through", "gumbel",
         "st_gumbel", "arm", "disarm")


def all_rows() -> list[tuple[str, str, dict]]:
    named = {name for _, name, _ in ROWS}
    return ROWS + [(name, name, {}) for name in estimators.available() if name not in named]


# --- data --------------------------------------------------------------------------------------------


class Batches:
    """Plain minibatching: one permutation per epoch, then slices of it, binarized with ``bernoulli`` (u < p)."""

    def __init__(self, data: torch.Tensor, seed: int):
        self.data, self.i, self.perm = data, 0, None
        self.per_epoch = data.shape[0] // BATCH
        self.perm_gen = torch.Generator().manual_seed(seed)
        self.gen = torch.Generator(device=data.device).manual_seed(seed + 1)

    def __call__(self) -> torch.Tensor:
        j = self.i % self.per_epoch
        if j == 0:
            self.perm = torch.randperm(self.data.shape[0], generator=self.perm_gen).to(self.data.device)
        self.i += 1
        return bernoulli(self.data[self.perm[j * BATCH:(j + 1) * BATCH]], self.gen)


# --- the plain step ----------------------------------------------------------------------------------


def bernoulli(p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Bernoulli(p) draws as ``u < p`` (what gradvar's sampler does, ``estimators.sampling.bernoulli``, 3x faster
    than ``torch.bernoulli`` on CPU), so the ratio measures the code around the math, not the sampler."""
    return (torch.rand(p.shape, generator=gen, dtype=p.dtype, device=p.device) < p).to(p.dtype)



class PlainStep:
    """One training step with the estimator written out: no distributions objects, no checks."""

    def __init__(self, model: VAE, family: str, est_id: str, n: int, batches: Batches, lr: float, seed: int):
        self.enc, self.dec = copy.deepcopy(model.encoder), copy.deepcopy(model.decoder)
        self.opt = torch.optim.Adam([*self.enc.parameters(), *self.dec.parameters()], lr=lr)
        self.family, self.est_id, self.n, self.batches = family, est_id, n, batches
        self.shape = model.latent.event_shape
        self.gen = torch.Generator(device=batches.data.device).manual_seed(seed)
        self.running_mean = None  # reinforce_ma
        self.estimate = getattr(self, "_" + est_id)

    def __call__(self) -> float:
        x = self.batches()
        h = self.enc(x)
        if self.family == "categorical":
            h = h.reshape(h.shape[0], *self.shape)
        loss = -(self.estimate(h, x) - self.kl(h)) / x.shape[0]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    # ELBO pieces
    def log_lik(self, x, z):
        logits = self.dec(z.flatten(2))
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def kl(self, h):
        if self.family == "gaussian":
            loc, log_scale = h.chunk(2, -1)
            return 0.5 * (loc.pow(2) + (2 * log_scale).exp() - 1 - 2 * log_scale).sum()
        if self.family == "bernoulli":  # KL(Bern(p) || Bern(1/2)) = p l - softplus(l) + log 2
            return (torch.sigmoid(h) * h - F.softplus(h)).sum() + h.numel() * math.log(2)
        log_p = F.log_softmax(h, -1)
        return (log_p.exp() * log_p).sum() + log_p[..., 0].numel() * math.log(h.shape[-1])

    def hard_sample(self, h):
        """A detached sample ``[n, B, *event]`` and the (differentiable) mean of q."""
        n, gen = self.n, self.gen
        if self.family == "gaussian":
            loc, log_scale = h.chunk(2, -1)
            eps = torch.randn(n, *loc.shape, generator=gen, device=h.device)
            return (loc + log_scale.exp() * eps).detach(), loc
        if self.family == "bernoulli":
            p = torch.sigmoid(h)
            return bernoulli(p.detach().expand(n, *p.shape), gen), p
        p = torch.softmax(h, -1)
        idx = torch.multinomial(p.detach().reshape(-1, p.shape[-1]), n, replacement=True, generator=gen)
        return F.one_hot(idx.T.reshape(n, *p.shape[:-1]), p.shape[-1]).to(p.dtype), p

    def log_q(self, h, z):
        if self.family == "gaussian":
            loc, log_scale = h.chunk(2, -1)
            return (-0.5 * ((z - loc) / log_scale.exp()).pow(2) - log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)
        if self.family == "bernoulli":
            return -F.binary_cross_entropy_with_logits(h.expand_as(z), z, reduction="none").sum(-1)
        return (z * F.log_softmax(h, -1)).sum((-2, -1))

    def score_sq_norms(self, h, z, mean):
        """Squared norm of d log q(z) / d (q's parameters: loc and scale, or the logits), per sample."""
        if self.family == "gaussian":
            loc, log_scale = (t.detach() for t in h.chunk(2, -1))
            eps2 = ((z - loc) / log_scale.exp()).pow(2)
            return ((eps2 + (eps2 - 1).pow(2)) / (2 * log_scale).exp()).sum(-1)
        return (z - mean.detach()).pow(2).flatten(2).sum(-1)

    # estimators: each returns the surrogate (mean over samples, summed over the batch)
    def _pathwise(self, h, x):
        loc, log_scale = h.chunk(2, -1)
        z = loc + log_scale.exp() * torch.randn(self.n, *loc.shape, generator=self.gen, device=h.device)
        return self.log_lik(x, z).mean(0).sum()

    def _reinforce_with(self, h, x, baseline):
        z, mean = self.hard_sample(h)
        fz = self.log_lik(x, z)
        signal = fz.detach()
        if baseline == "leave_one_out":
            b = (signal.sum(0, keepdim=True) - signal) / (self.n - 1)
        elif baseline == "weighted_leave_one_out":
            w = self.score_sq_norms(h, z, mean)
            num = (signal * w).sum(0, keepdim=True) - signal * w
            den = w.sum(0, keepdim=True) - w
            loo = (signal.sum(0, keepdim=True) - signal) / (self.n - 1)
            b = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), loo)
        elif baseline == "moving_average":
            b = 0.0 if self.running_mean is None else self.running_mean
            mean_now = signal.mean()
            self.running_mean = mean_now if self.running_mean is None else 0.99 * self.running_mean + 0.01 * mean_now
        else:
            b = 0.0
        return fz.mean(0).sum() + ((signal - b) * self.log_q(h, z)).mean(0).sum()

    def _reinforce(self, h, x):
        return self._reinforce_with(h, x, "none")

    def _reinforce_ma(self, h, x):
        return self._reinforce_with(h, x, "moving_average")

    def _reinforce_loo(self, h, x):
        return self._reinforce_with(h, x, "leave_one_out")

    def _reinforce_wloo(self, h, x):
        return self._reinforce_with(h, x, "weighted_leave_one_out")

    def _straight_through(self, h, x):
        hard, p = self.hard_sample(h)
        return self.log_lik(x, hard + p - p.detach()).mean(0).sum()

    def relaxed(self, h, hard_forward):
        finfo = torch.finfo(h.dtype)
        u = torch.rand(self.n, *h.shape, generator=self.gen, device=h.device).clamp(finfo.tiny, 1 - finfo.eps)
        if self.family == "bernoulli":
            y = torch.sigmoid((h + u.log() - (-u).log1p()) / 0.5)
            hard = (y > 0.5).to(y.dtype) if hard_forward else None
        else:
            y = torch.softmax((h - (-u.log()).log()) / 0.5, -1)
            hard = F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype) if hard_forward else None
        return y if hard is None else hard + y - y.detach()

    def _gumbel(self, h, x):
        return self.log_lik(x, self.relaxed(h, False)).mean(0).sum()

    def _st_gumbel(self, h, x):
        return self.log_lik(x, self.relaxed(h, True)).mean(0).sum()

    def antithetic(self, h, x, disarm):
        n = self.n
        with torch.no_grad():
            u = torch.rand(n, *h.shape, generator=self.gen, device=h.device)
            p = torch.sigmoid(h)
            b, bt = (u < p).to(h.dtype), (1 - u < p).to(h.dtype)
        both = self.log_lik(x, torch.cat([b, bt]))
        fb, fbt = both[:n], both[n:]
        with torch.no_grad():
            diff = (fb - fbt).unsqueeze(-1)
            if disarm:
                g = 0.5 * diff * (1 - 2 * bt) * (b != bt).to(h.dtype) * torch.sigmoid(h.abs())
            else:
                g = -diff * (u - 0.5)
        return (0.5 * (fb + fbt)).mean(0).sum() + (g.mean(0) * h).sum()

    def _arm(self, h, x):
        return self.antithetic(h, x, False)

    def _disarm(self, h, x):
        return self.antithetic(h, x, True)


# --- gradvar's steps ---------------------------------------------------------------------------------


class CoreStep:
    """``Run.train_step``'s code path without the Run: VAE.posterior, VAE.objective, the estimator, Adam."""

    def __init__(self, run: Run, name: str, options: dict, batches: Batches, seed: int):
        self.model = copy.deepcopy(run.model)
        self.est = estimators.get(name, **options).to(run.device)
        self.opt = Adam(list(self.model.parameters()), lr=run.config.train.lr)
        self.n, self.kl, self.batches = int(run.config.n_samples), run.config.objective.kl, batches
        self.gen = torch.Generator(device=run.device).manual_seed(seed)

    def __call__(self) -> float:
        x = self.batches()
        q = self.model.posterior(x)
        f, exact_term = self.model.objective(x, q, self.kl)
        out = self.est(f, q, self.n, self.gen)
        elbo = out.surrogate + exact_term
        loss = -elbo / x.shape[0]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(-elbo.detach()) / x.shape[0]


def build_run(layer: dict, dataset: data_mod.Dataset, est_entry: dict, n: int, device, out: Path) -> Run:
    """A real Run; its data set is ``dataset`` (the loader is replaced while it is built), so nothing is read."""
    config = resolve({**layer, "dataset": dataset.name, "estimator": est_entry, "n_samples": n,
                      "device": str(device), "seed": 0})
    with serving(dataset):
        return Run(config, out)


def run_step(run: Run):
    def step() -> float:
        loss = run.train_step()
        run.step += 1  # as Run._run does: the next minibatch, epochs included
        return loss
    return step


def storchastic_step(model: VAE, family: str, n: int, batches: Batches, lr: float):
    """storchastic's REINFORCE with the leave-one-out baseline on the same VAE (raises ImportError without it)."""
    import storch
    from storch.method import ScoreFunction
    from torch.distributions import Bernoulli, Normal, OneHotCategorical, kl_divergence

    enc, dec = copy.deepcopy(model.encoder), copy.deepcopy(model.decoder)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr)
    method = ScoreFunction("z", n_samples=n, baseline_factory="batch_average")
    shape = model.latent.event_shape

    def step() -> float:
        x = batches()
        opt.zero_grad(set_to_none=True)
        storch.reset()
        xs = storch.denote_independent(x, 0, "data")
        h = enc(xs)
        if family == "gaussian":
            loc, log_scale = h[..., :shape[0]], h[..., shape[0]:]
            q = Normal(loc, log_scale.exp())
            prior = Normal(torch.zeros_like(loc._tensor), torch.ones_like(loc._tensor))
        elif family == "bernoulli":
            q, prior = Bernoulli(logits=h), Bernoulli(logits=torch.zeros_like(h._tensor))
        else:
            logits = h.reshape(h.shape[:-1] + tuple(shape))
            q, prior = OneHotCategorical(logits=logits), OneHotCategorical(logits=torch.zeros_like(logits._tensor))
        storch.add_cost(kl_divergence(q, prior).sum(-1), "kl")
        z = method(q)
        logits_x = dec(z.reshape(z.shape[:-2] + (-1,)) if family == "categorical" else z)
        # -log p(x|z) of a Bernoulli decoder, softplus(l) - x l, written so that storch broadcasts its plates
        storch.add_cost((F.softplus(logits_x) - xs * logits_x).sum(-1), "reconstruction")
        cost = storch.backward()
        opt.step()
        return float(cost.detach())
    return step


# --- the table -----------------------------------------------------------------------------------------


def _ms(times: list[float] | None) -> str:
    return f"{1e3 * statistics.median(times):9.2f}" if times else f"{'-':>9s}"


HEADER = (f"  {'estimator':18s} {'n':>2s} {'plain ms':>9s} {'core ms':>9s} {'Run ms':>9s}  {'Run/plain':>9s}  "
          f"{'per round min / med / max':25s} {'core/plain':>10s} {'Run/core':>9s}")


def print_row(est_id: str, n: int, times: dict[str, list[float]]) -> tuple[float | None, float | None]:
    """Prints one row; returns (Run/plain, core/plain), medians of the per-round ratios (None without a plain
    side)."""
    plain, core, run = times.get("plain"), times["core"], times["Run"]
    best = median_ratio(run, plain) if plain else None
    cells = [f"  {est_id:18s} {n:2d} {_ms(plain)} {_ms(core)} {_ms(run)}"]
    if plain:
        flag = f"  > {TARGET:.2f}" if best > TARGET else ""
        spread = min_median_max(per_round(run, plain), "5.3f")
        cells.append(f"  {best:8.3f}x  {spread:25s} {median_ratio(core, plain):9.3f}x "
                     f"{median_ratio(run, core):8.3f}x{flag}")
    else:
        cells.append(f"  {'-':>9s}  {'(no plain version)':25s} {'-':>10s} {median_ratio(run, core):8.3f}x")
    print("".join(cells), flush=True)
    if "storchastic" in times:
        st = times["storchastic"]
        spread = min_median_max(per_round(st, plain), "5.3f")
        print(f"  {'  storchastic':18s} {n:2d} {_ms(plain)} {'':9s} {_ms(st)}  {median_ratio(st, plain):8.3f}x  "
              f"{spread:25s} (storchastic ScoreFunction, batch_average baseline, in the Run column)", flush=True)
    return best, (median_ratio(core, plain) if plain else None)


# --- main --------------------------------------------------------------------------------------------


def bench_latent(size: str, label: str, layer: dict, spec: dict, rows, seconds, rounds, device, tmp: Path,
                 dataset: data_mod.Dataset, storch_ok: bool) -> list[tuple[str, str, float, float]]:
    base = resolve({**layer, "dataset": spec["dataset"]})
    latent, hidden, act = base.latent, base.model.hidden, base.model.activation
    print(f"\n[{size}] {label}: {latent.label()} latents, {spec['x_dim']}-{hidden}-{latent.n_outputs} {act} "
          f"encoder, mirrored decoder; {seconds:g} s windows, {rounds} rounds", flush=True)
    probe = VAE(spec["x_dim"], latent, hidden, act).to(device)
    q = probe.posterior(torch.zeros(1, spec["x_dim"], device=device))
    print(HEADER)
    flagged = []  # (size, label, Run/plain, core/plain) of every row with a plain side
    for i, (est_id, name, options) in enumerate(rows):
        est = estimators.get(name, **options)
        n = N_SAMPLES // 2 if est.capabilities.evaluations_per_sample == 2 else N_SAMPLES  # arm/disarm: pairs
        reason = objectives.why_not(est, q, n, base.objective)  # as a Run decides (stl: only with kl sampled)
        if reason is not None:
            print(f"  {est_id:18s} skipped: {reason}", flush=True)
            continue
        run = build_run(layer, dataset, {"id": est_id, "name": name, **options}, n, device, tmp)
        seed = 1000 * i
        sides = {}
        if est_id in PLAIN:
            sides["plain"] = PlainStep(run.model, latent.family, est_id, n, Batches(run.train_data, seed),
                                       run.config.train.lr, seed + 2)
        sides["core"] = CoreStep(run, name, options, Batches(run.train_data, seed), seed + 2)
        sides["Run"] = run_step(run)
        if est_id == "reinforce_loo" and storch_ok:
            try:
                step = storchastic_step(run.model, latent.family, n, Batches(run.train_data, seed),
                                        run.config.train.lr)
                step()
                sides["storchastic"] = step
            except Exception as err:  # noqa: BLE001  (an optional third-party comparison must not stop the run)
                print(f"  storchastic step failed on {latent.label()}: {type(err).__name__}: {err}")
        times = interleaved(sides, seconds, rounds, device)
        diverged = run.divergence.read()  # recorded on the device by Run.train_step, read once here
        if diverged:
            print(f"  {est_id:18s} diverged while timing ({diverged[0][1]}); no numbers", flush=True)
            continue
        best, core_ratio = print_row(est_id, n, times)
        if best is not None:
            flagged.append((size, f"{label} {est_id}", best, core_ratio))
        del run, sides
        gc.collect()
    return flagged


def _names(values: list[str] | None) -> list[str] | None:
    return None if values is None else [v for value in values for v in value.split(",") if v]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="timing window per side and round (default: digits 0.02, paper 0.05)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: 30)")
    ap.add_argument("--sizes", nargs="+", default=None, metavar="SIZE",
                    help="digits and/or paper (default: both; with --quick: digits)")
    ap.add_argument("--latents", nargs="+", default=None, metavar="NAME",
                    help="latents of the chosen sizes (e.g. kingma2013 jang2017_bernoulli 'bernoulli(8)'); "
                         "default: all")
    ap.add_argument("--estimators", nargs="+", default=None, metavar="ID",
                    help="row ids or registered names (e.g. pathwise reinforce_loo gumbel; 'reinforce' names every "
                         "reinforce row); default: all")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny windows, 2 rounds, digits only by default")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    sizes = _names(args.sizes) or (["digits"] if args.quick else list(SIZES))
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"unknown size(s) {', '.join(unknown)}; valid: {', '.join(SIZES)}")
    latents = _names(args.latents)
    if latents:
        valid = [label for size in sizes for label in SIZES[size]["latents"]]
        unknown = [name for name in latents if name not in valid]
        if unknown:
            raise SystemExit(f"unknown latent(s) {', '.join(unknown)} for size(s) {', '.join(sizes)}; valid: "
                             f"{', '.join(valid)}")
    rows = all_rows()
    wanted = _names(args.estimators)
    if wanted:
        valid = {est_id for est_id, _, _ in rows} | {name for _, name, _ in rows}
        unknown = [w for w in wanted if w not in valid]
        if unknown:
            raise SystemExit(f"unknown estimator(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        rows = [row for row in rows if row[0] in wanted or row[1] in wanted]
    try:
        import storch  # noqa: F401  (optional: only whether it imports matters here)
        storch_ok, storch_note = True, "storchastic importable: its REINFORCE-LOO step is timed too"
    except ImportError:
        storch_ok, storch_note = False, "storchastic not installed"

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, threads {torch.get_num_threads()}; batch {BATCH}, "
          f"n_samples {N_SAMPLES} (arm/disarm: {N_SAMPLES // 2} antithetic pairs = {N_SAMPLES} evaluations); "
          f"{storch_note}")
    print("ms: seconds per full training step, median over rounds. Run/plain: median over rounds of the "
          f"per-round ratio (flagged above {TARGET}); per round: min / median / max of those ratios. "
          "core = Run.train_step's code path with the plain minibatches; Run/core = what Run adds (its minibatch "
          "selection, divergence checks).")
    flagged = []
    with tempfile.TemporaryDirectory(prefix="bench_vae_step.") as tmp:
        for size in sizes:
            spec = SIZES[size]
            seconds, rounds = (QUICK_TIMING if args.quick else TIMING)[size]
            seconds = args.seconds if args.seconds is not None else seconds
            rounds = args.rounds if args.rounds is not None else rounds
            dataset = random_dataset(spec["dataset"], spec["n_train"], spec["x_dim"], device)
            for label, layer in spec["latents"].items():
                if latents and label not in latents:
                    continue
                flagged += bench_latent(size, label, layer, spec, rows, seconds, rounds, device, Path(tmp), dataset,
                                        storch_ok)
    print(f"\nabove {TARGET} (medians of the per-round ratios; the target applies to the paper sizes; estimators "
          "without a plain version have no ratio):")
    for size in sizes:
        for column, index in (("Run/plain", 2), ("core/plain", 3)):
            mine = [f"{row[1]} {row[index]:.3f}x" for row in flagged if row[0] == size and row[index] > TARGET]
            print(f"  {size} {column}: {', '.join(mine) if mine else 'none'}")


if __name__ == "__main__":
    main()
