"""Cross-key checks of a study config: what ``workflow/schemas/config.schema.yaml`` cannot say, because it ties
one key to another (a latent to its preset, an estimator entry to the latents and data sets it names, a host
run to the entries that train on its latent). Each failure is one ``ConfigError`` line naming the key path and
what is valid."""
from __future__ import annotations

from experiments.config.typed_config import ConfigError, parse, suggestion, to_dict
from experiments.vae import data, run_config
from experiments.vae.latent import LatentSpec


def estimator_entries(config: dict, study: str) -> tuple[dict, dict[str, str]]:
    """The study's estimator entries: the shared top-level ``estimators`` and the study's own, with the
    config path of each (an id defined in both places is refused)."""
    shared, own = config.get("estimators") or {}, config[study]["estimators"]
    both = sorted(set(shared) & set(own))
    if both:
        raise ConfigError(f"{study}.estimators.{both[0]}: also defined under the shared estimators; use another id")
    paths = {**{i: f"estimators.{i}" for i in shared}, **{i: f"{study}.estimators.{i}" for i in own}}
    return {**shared, **own}, paths


def latents(entries: dict) -> dict[str, tuple[LatentSpec, str | None, dict]]:
    """latent id -> (latent, preset, the latent's own settings: a layer over ``vae.settings``, checked); a
    preset must be one of ``run_config.PRESETS`` and made for that latent."""
    out = {}
    for latent_id, entry in entries.items():
        entry = dict(entry)
        preset = entry.pop("preset", None)
        own = entry.pop("settings", None) or {}
        run_config.parse_settings(own, f"vae.latents.{latent_id}.settings")
        out[latent_id] = (parse(LatentSpec, entry, f"vae.latents.{latent_id}"), preset, own)
        if preset is not None:
            if preset not in run_config.PRESETS:
                raise ConfigError(f"vae.latents.{latent_id}.preset: unknown preset {preset!r}"
                                  f"{suggestion(preset, run_config.PRESETS)}; valid: {', '.join(run_config.PRESETS)}")
            expected = run_config.PRESETS[preset]["latent"]
            if to_dict(out[latent_id][0]) != to_dict(parse(LatentSpec, expected)):
                raise ConfigError(f"vae.latents.{latent_id}: preset {preset!r} is for the latent {expected}, "
                                  f"not {entry}")
    return out


def data_downloads(vae: dict) -> dict[str, str]:
    """Data set -> a one-line notice, for the data sets whose files the jobs will download (neither in a data
    folder nor cached); a data folder that lacks a data set's files is refused."""
    notices = {}
    for dataset in vae["datasets"]:
        try:
            data.check_present(dataset, vae.get("data_dir"))
        except data.DataError as err:
            raise ConfigError(f"vae.data_dir: {err}") from None
        missing = data.to_download(dataset, vae.get("data_dir"))
        if missing:
            notices[dataset] = (
                f"data: {dataset}: {len(missing)} file(s) ({', '.join(r.name for r in missing)}) are neither in a "
                f"data folder (vae.data_dir, GRADVAR_DATA) nor in the cache {data.cache_folder(dataset)}; the "
                f"first job that reads them downloads them from {missing[0].urls[0].rsplit('/', 1)[0]}/")
    return notices


def check_vae_entries(specs: dict, datasets: list[str], latent_ids) -> None:
    """An ``lr_grid`` needs a validation split in every data set; ``latents:`` must name defined latents."""
    for spec in specs.values():
        no_validation = [d for d in datasets if d not in data.WITH_VALIDATION]
        if spec.lr_grid is not None and no_validation:
            raise ConfigError(f"vae.estimators.{spec.id}.lr_grid: selecting a learning rate needs a validation "
                              f"split, which {no_validation[0]!r} has not; data sets with one: "
                              f"{', '.join(data.WITH_VALIDATION)}")
        unknown = sorted(set(spec.latents or ()) - set(latent_ids))
        if unknown:
            raise ConfigError(f"vae.estimators.{spec.id}.latents: unknown latent(s) {unknown}; defined: "
                              f"{', '.join(latent_ids)}")


def check_hosts(trained_with: dict, latent_ids, runnable: dict[tuple[str, str], list[int]], host_samples: int) -> None:
    """Every latent's host run (``vae.shared_checkpoints.trained_with``) names an entry that trains on it at the
    first of ``vae.n_samples``; ``runnable`` is (latent, estimator id) -> its training n_samples."""
    unknown = sorted(set(trained_with) - set(latent_ids))
    if unknown:
        raise ConfigError(f"vae.shared_checkpoints.trained_with.{unknown[0]}: unknown latent"
                          f"{suggestion(unknown[0], latent_ids)}; defined: {', '.join(latent_ids)}")
    for latent_id in latent_ids:
        host_id = trained_with.get(latent_id)
        if host_id is None or host_samples not in runnable.get((latent_id, host_id), []):
            candidates = [e for (lat, e), ns in runnable.items() if lat == latent_id and host_samples in ns]
            raise ConfigError(f"vae.shared_checkpoints.trained_with.{latent_id}: must name an estimator id that "
                              f"runs on that latent with n_samples={host_samples} (the first of vae.n_samples); "
                              f"got {host_id!r}; candidates: {', '.join(candidates)}")


def host_lr(lr: float, grid: tuple[float, ...], latent_id: str, est_id: str) -> float:
    """The host of a latent whose entry has a learning-rate grid is its run at the study's learning rate: the
    shared checkpoints cannot wait for a selection that needs every run of the grid finished."""
    if lr not in grid:
        raise ConfigError(f"vae.estimators.{est_id}.lr_grid: must include the learning rate of the runs it is "
                          f"compared with ({lr:g}, vae.settings.train.lr or its default): its run at that rate "
                          f"hosts the shared checkpoints of latent {latent_id!r}; got {list(grid)}")
    return lr
