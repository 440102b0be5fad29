"""The study config (``config/*.yaml``), checked against its JSON schema with one-line errors.

``check(config)`` returns the config with the schema's defaults filled in, or raises ``ConfigError`` whose
message names the key path, says what is wrong and, for a misspelled key or value, what was probably
meant::

    ConfigError: sedes: unknown key (did you mean 'seeds'?); valid keys: check_devices, claim, ...

The schema (``workflow/schemas/config.schema.yaml``) is the one source of the study-level keys, their
descriptions and defaults; the nested run settings are checked by ``experiments.config.plan``.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import yaml

from experiments.config.typed_config import ConfigError, load_yaml, suggestion

#: results/snapshots/ holds the committed snapshots (``experiments.verdict.snapshot.SNAPSHOTS``), not a study's output.
RESERVED_STUDY = "snapshots"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path)


def _message(error) -> str:
    where = _path(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in known]
        key = unknown[0]
        full = f"{where}.{key}" if where else key
        return f"{full}: unknown key{suggestion(key, known)}; valid keys: {', '.join(sorted(known))}"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        full = f"{where}.{missing[0]}" if where else missing[0]
        return f"{full}: required key is missing"
    if error.validator == "enum":
        return (f"{where}: {error.instance!r} is not valid{suggestion(error.instance, error.validator_value)}; "
                f"valid: {', '.join(map(str, error.validator_value))}")
    if error.validator == "pattern" and error.absolute_path and isinstance(error.instance, str):
        return f"{where}: {error.instance!r} does not match the pattern {error.validator_value}"
    return f"{where or 'config'}: {error.message}"


def _fill_defaults(node, sch: dict) -> None:
    if not isinstance(node, dict):
        return
    for key, sub in sch.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            _fill_defaults(node[key], sub)


def typed(values):
    """Values given with ``snakemake --config KEY=VALUE``, typed as YAML types them: Snakemake reads nested
    values as text (``seeds=[0]`` gives ``['0']``), so each text leaf is read again as YAML (``[0]``)."""
    if isinstance(values, dict):
        return {key: typed(value) for key, value in values.items()}
    if isinstance(values, (list, tuple)):
        return [typed(value) for value in values]
    if isinstance(values, str):
        try:
            return load_yaml(values)
        except yaml.YAMLError:
            return values
    return values


def check(config: dict) -> dict:
    """``config`` with defaults filled in; a ``ConfigError`` with one line for the first problem found."""
    if not isinstance(config, dict) or not config:
        raise ConfigError("config: empty; pass a study config, e.g. --configfile config/config.yaml")
    validator = jsonschema.Draft202012Validator(schema())
    errors = list(validator.iter_errors(config))
    if errors:
        # The deepest error is the most specific (an unknown key inside an entry, not "the entry is invalid").
        error = max(errors, key=lambda e: (len(e.absolute_path), e.validator == "additionalProperties"))
        raise ConfigError(_message(error))
    if config["study"] == RESERVED_STUDY:
        raise ConfigError(f"study: {RESERVED_STUDY!r} is reserved: results/{RESERVED_STUDY}/ holds the committed "
                          f"snapshots of studies (experiments/verdict/snapshot.py); choose another name")
    out = copy.deepcopy(config)
    _fill_defaults(out, schema())
    return out


def default(path: str):
    """The schema's default for a key path (e.g. ``claim.threshold``)."""
    node = schema()
    for part in path.split("."):
        node = node["properties"][part]
    return node["default"]
