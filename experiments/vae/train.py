"""Train one VAE with one gradient estimator; evaluate and measure gradient variance along the way.

    python -m experiments.vae.train --config config/vae/quick_gaussian.yaml --out results/vae/runs/NAME \
        [--set estimator.name=reinforce --set estimator.baseline=leave_one_out --set seed=1 ...]

The run folder gets:

- ``config.json``: the resolved config;
- ``metrics.csv``: train/test ELBO and the test IWAE bound at every ``eval.every`` steps;
- ``variance.csv``: the encoder-gradient variance of this run's own estimator at ``variance.every``
  steps (protocol ``own_run``, see ``gradient_variance``);
- ``status.json``: ``completed`` or ``diverged`` (with the step), written last;
- ``checkpoints/``: ``resume.pt`` (rolling, every ``checkpoint_every`` steps) and ``step_N.pt`` model
  snapshots at the variance steps, for the ``reference_run`` protocol.

Reliability: re-running the same command resumes from ``resume.pt`` and ends with the same results as an
uninterrupted run (bit-identical on CPU): the training generator, optimizer, estimator state and rows so far
are in the checkpoint, and evaluations draw from generators seeded by (seed, step). A loss or parameter
that becomes NaN/inf stops the run with status ``diverged`` and exit code 0, so a sweep goes on. Every file
is written atomically. A finished run is not run again.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import logging
import math
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

import estimators

from .. import data as data_mod
from ..devices import device_name, resolve_device
from ..io import atomic_write_text, write_csv_atomic
from ..provenance import provenance
from ..seeds import cell_seed
from .gradient_variance import encoder_gradient_estimates, reference_gradient, variance_row
from .model import PRESETS, VAE, BaselineNet, LatentSpec

log = logging.getLogger("gradvar.vae")

DEFAULTS: dict = {
    "dataset": "digits",
    "data_dir": None,
    "cache_dir": None,
    "preset": None,
    "latent": {"family": "gaussian", "dim": 8},
    "model": {"hidden": [128], "activation": "relu"},
    "estimator": {"name": "pathwise"},
    "n_samples": 1,
    "seed": 0,
    "device": "cpu",
    "train": {"steps": 1000, "batch_size": 100, "optimizer": "adam", "lr": 1e-3},
    "eval": {"every": 250, "iwae_k": 50, "elbo_samples": 1, "train_subset": 1000, "batch_size": 500},
    "variance": {"every": 500, "n_estimates": 50, "batch_size": 100,
                 "reference": {"max_support": 1024, "n_samples": 100, "n_estimates": 50}},
    "checkpoint_every": 100,
    # Testing aid: make the loss NaN at this step, to exercise the divergence path.
    "fault": {"nan_at_step": None},
}
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


class Diverged(RuntimeError):
    pass


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("latent", "estimator"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise ValueError(f"--set expects key.path=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.split("."), yaml.safe_load(value)


def resolve_config(user: dict, overrides: list[str] = ()) -> dict:
    """Defaults, then the preset, then the user's config, then ``--set`` overrides."""
    user = copy.deepcopy(user or {})
    for text in overrides:
        path, value = parse_override(text)
        node = user
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    preset = user.get("preset")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    config = deep_merge(DEFAULTS, PRESETS.get(preset, {}))
    config = deep_merge(config, user)
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    if config["dataset"] not in data_mod.DATASETS:
        raise ValueError(f"unknown dataset {config['dataset']!r}; valid: {', '.join(data_mod.DATASETS)}")
    return config


def build_estimator(cfg: dict):
    opts = {k: v for k, v in cfg.items() if k not in ("name", "nvil")}
    return estimators.get(cfg["name"], **opts), bool(cfg.get("nvil", False))


class Run:
    """Everything a training run holds; ``state_dict`` is the resume checkpoint."""

    def __init__(self, config: dict, out: Path):
        self.config, self.out = config, out
        self.device = resolve_device(config["device"])
        self.latent = LatentSpec.from_config(config["latent"])
        self.data = data_mod.load(config["dataset"], config["data_dir"], config["cache_dir"])
        # nn.Linear initializes from torch's global generator: seed it inside a fork, so the run is determined
        # by its seed and the caller's global RNG state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            self.model = VAE(self.data.dim, self.latent, config["model"]["hidden"],
                             config["model"]["activation"]).to(self.device)
        self.est, nvil = build_estimator(config["estimator"])
        self.est = self.est.to(self.device)
        q = self.model.posterior(torch.zeros(1, self.data.dim, device=self.device))
        if not self.est.supports(q):
            raise ValueError(f"estimator {self.est.describe()} does not support {self.latent.family} latents; "
                             f"estimators that do: {', '.join(estimators.supporting(q))}")
        if nvil and self.est.name != "reinforce":
            raise ValueError("estimator.nvil (a learned baseline) applies to 'reinforce' only")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"] + 1)
            self.baseline_net = BaselineNet(self.data.dim).to(self.device) if nvil else None
        params = list(self.model.parameters()) + (list(self.baseline_net.parameters()) if nvil else [])
        opt_name = config["train"]["optimizer"]
        if opt_name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {opt_name!r}; valid: {', '.join(OPTIMIZERS)}")
        self.opt = OPTIMIZERS[opt_name](params, lr=float(config["train"]["lr"]))
        self.gen = torch.Generator(device=self.device).manual_seed(cell_seed(config["seed"], "train"))
        self.step = 0
        self.evaluated_step = -1  # the last step whose evaluations are in the rows (a resume must not redo them)
        self.metrics: list[dict] = []
        self.variance: list[dict] = []
        self.train_seconds = 0.0
        self.train_data = self.data.train.to(self.device)
        self.test_data = self.data.test.to(self.device)
        self.ids = {
            "experiment": "vae", "dataset": config["dataset"], "latent": self.latent.label(),
            "latent_family": self.latent.family, "estimator": self.est.name,
            "estimator_label": self.est.describe() + ("+nvil" if nvil else ""),
            "estimator_options": json.dumps(self.est.options(), sort_keys=True), "nvil": nvil,
            "n_samples": int(config["n_samples"]), "seed": int(config["seed"]), "device": str(self.device),
            "device_name": device_name(self.device), **provenance(config),
        }

    # --- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config_hash": self.ids["config_hash"], "step": self.step, "evaluated_step": self.evaluated_step,
            "model": self.model.state_dict(), "opt": self.opt.state_dict(), "est": self.est.state_dict(),
            "baseline_net": None if self.baseline_net is None else self.baseline_net.state_dict(),
            "gen": self.gen.get_state(), "metrics": self.metrics, "variance": self.variance,
            "train_seconds": self.train_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config_hash"] != self.ids["config_hash"]:
            raise ValueError(f"{self.out}: the checkpoint belongs to another config (hash {state['config_hash']} "
                             f"vs {self.ids['config_hash']}); use a new output folder")
        self.step = state["step"]
        self.evaluated_step = state["evaluated_step"]
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.est.load_state_dict(state["est"])
        if self.baseline_net is not None:
            self.baseline_net.load_state_dict(state["baseline_net"])
        self.gen.set_state(state["gen"])
        self.metrics, self.variance = state["metrics"], state["variance"]
        self.train_seconds = state["train_seconds"]

    def save(self, path: Path, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)

    def write_tables(self) -> None:
        write_csv_atomic(pd.DataFrame(self.metrics), self.out / "metrics.csv")
        write_csv_atomic(pd.DataFrame(self.variance), self.out / "variance.csv")

    # --- one step ------------------------------------------------------------------------------
    def batch(self, step: int) -> torch.Tensor:
        bs = int(self.config["train"]["batch_size"])
        per_epoch = max(1, self.train_data.shape[0] // bs)
        epoch, i = divmod(step, per_epoch)
        perm = torch.randperm(self.train_data.shape[0],
                              generator=torch.Generator().manual_seed(cell_seed(self.config["seed"], "epoch", epoch)))
        idx = perm[i * bs:(i + 1) * bs].to(self.device)
        return self.data.binarize(self.train_data[idx], self.gen)

    def train_step(self) -> float:
        x = self.batch(self.step)
        q = self.model.posterior(x)
        kwargs = {"learned_baseline": self.baseline_net(x)} if self.baseline_net is not None else {}
        out = self.est(self.model.elbo_integrand(x, q), q, int(self.config["n_samples"]), self.gen, **kwargs)
        loss = -out.surrogate / x.shape[0]
        if out.baseline_loss is not None:
            loss = loss + out.baseline_loss / x.shape[0]
        if self.config["fault"]["nan_at_step"] == self.step:
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            raise Diverged(f"loss is {float(loss)} at step {self.step}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise Diverged(f"parameters became non-finite at step {self.step}")
        return float(-out.surrogate.detach()) / x.shape[0]

    # --- evaluation ----------------------------------------------------------------------------
    def _eval_gen(self, *tag) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(cell_seed(self.config["seed"], *tag, self.step))

    @torch.no_grad()
    def evaluate(self) -> None:
        cfg = self.config["eval"]
        gen = self._eval_gen("eval")
        bs = int(cfg["batch_size"])
        subset = self.train_data[: int(cfg["train_subset"])]
        train_x = torch.bernoulli(subset, generator=gen) if self.data.dynamic else subset
        rows = {"train": (train_x, False), "test": (self.test_data, True)}
        temperature = getattr(self.est, "current_temperature", math.nan)
        for split, (x_all, with_iwae) in rows.items():
            elbos, iwaes = [], []
            for chunk in x_all.split(bs):
                elbos.append(self.model.elbo(chunk, gen, int(cfg["elbo_samples"])))
                if with_iwae:
                    iwaes.append(self.model.iwae_bound(chunk, int(cfg["iwae_k"]), gen))
            self.metrics.append({
                **self.ids, "step": self.step, "split": split, "elbo": float(torch.cat(elbos).mean()),
                "iwae": float(torch.cat(iwaes).mean()) if iwaes else math.nan,
                "iwae_k": int(cfg["iwae_k"]) if iwaes else 0, "temperature": temperature,
                "seconds_per_step": self.train_seconds / self.step if self.step else math.nan,
            })
        log.info("step %d: train ELBO %.2f, test ELBO %.2f, test IWAE %.2f", self.step,
                 self.metrics[-2]["elbo"], self.metrics[-1]["elbo"], self.metrics[-1]["iwae"])

    def measure_variance(self) -> None:
        cfg = self.config["variance"]
        x = self.test_data[: int(cfg["batch_size"])]
        reference = reference_gradient(self.model, x, self._eval_gen("reference"), cfg["reference"])
        res = encoder_gradient_estimates(self.model, x, self.est, n_samples=int(self.config["n_samples"]),
                                         n_estimates=int(cfg["n_estimates"]), generator=self._eval_gen("variance"),
                                         reference=reference, baseline_net=self.baseline_net)
        self.variance.append({**self.ids, "step": self.step, "protocol": "own_run",
                              "measured_estimator": self.ids["estimator_label"], **variance_row(res, reference)})
        self.save(self.out / "checkpoints" / f"step_{self.step:07d}.pt",
                  {"config_hash": self.ids["config_hash"], "step": self.step, "model": self.model.state_dict(),
                   "baseline_net": None if self.baseline_net is None else self.baseline_net.state_dict()})

    # --- the loop ------------------------------------------------------------------------------
    def due(self, every: int) -> bool:
        return every > 0 and (self.step % every == 0 or self.step == int(self.config["train"]["steps"]))

    def run(self) -> str:
        steps = int(self.config["train"]["steps"])
        resume = self.out / "checkpoints" / "resume.pt"
        if resume.exists():
            self.load_state_dict(torch.load(resume, map_location=self.device, weights_only=False))
            log.info("resumed at step %d from %s", self.step, resume)
        atomic_write_text(self.out / "status.json", json.dumps({"status": "running", "step": self.step}))
        try:
            while True:
                if self.evaluated_step < self.step:
                    if self.due(int(self.config["eval"]["every"])):
                        self.evaluate()
                    if self.due(int(self.config["variance"]["every"])):
                        self.measure_variance()
                    self.evaluated_step = self.step
                if self.step == steps:
                    break
                if self.step % int(self.config["checkpoint_every"]) == 0:
                    self.save(resume, self.state_dict())
                    self.write_tables()
                start = time.perf_counter()
                self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.train_seconds += time.perf_counter() - start
                self.step += 1
        except Diverged as err:
            log.error("diverged: %s", err)
            self.write_tables()
            atomic_write_text(self.out / "status.json",
                              json.dumps({"status": "diverged", "step": self.step, "message": str(err)}))
            return "diverged"
        self.write_tables()
        atomic_write_text(self.out / "status.json", json.dumps({"status": "completed", "step": self.step}))
        self.save(resume, self.state_dict())
        return "completed"


def train(config: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    status_path = out / "status.json"
    if status_path.exists() and json.loads(status_path.read_text())["status"] in ("completed", "diverged"):
        saved = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else None
        if saved == config:
            log.info("%s already finished (%s); nothing to do", out, json.loads(status_path.read_text())["status"])
            return json.loads(status_path.read_text())["status"]
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return Run(config, out).run()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train a VAE with one gradient estimator")
    ap.add_argument("--config", help="YAML config (see config/vae/); defaults apply to what it leaves out")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config entry, e.g. --set estimator.name=reinforce (repeatable)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    user = {}
    if args.config:
        with open(args.config) as fh:
            user = yaml.safe_load(fh) or {}
    config = resolve_config(user, args.set)
    status = train(config, Path(args.out))
    log.info("run %s: %s", args.out, status)


if __name__ == "__main__":
    main()
