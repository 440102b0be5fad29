"""The user's own estimator modules, named in a config (``modules: [...]``) and imported before any
estimator entry is read, in the planner and in every job, so an estimator registered outside the package
works everywhere the package's own do."""
from __future__ import annotations

import importlib
import sys

from experiments.config.typed_config import ConfigError


def import_modules(names, path: str = "modules") -> None:
    if "" not in sys.path:
        sys.path.insert(0, "")  # modules next to the Snakefile, where every job runs
    for i, name in enumerate(names or []):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any failure of the user's module, reported in one line
            raise ConfigError(f"{path}[{i}]: cannot import {name!r}: {type(err).__name__}: {err}") from None
