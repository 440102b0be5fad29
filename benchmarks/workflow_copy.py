"""A copy of the workflow in a folder of its own, where a study can run without touching the checkout's
``results/`` and ``logs/``: what the end-to-end tests (through ``tests/studies.py`` and the ``workflow_copy``
fixture of ``tests/conftest.py``), ``bench_study.py`` and ``gpu_check.py`` run their studies in.

It lives with the benchmarks so that they import nothing from ``tests/``; the tests load it by its path.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What Snakemake needs to run a study: the entry point, the rules and scripts, the profiles, the study configs.
WORKFLOW = ("Snakefile", "workflow", "profiles", "config")
#: The Python packages the jobs import, for a copy whose jobs must run its own code (``PYTHONPATH`` set to it):
#: without them the jobs import the checkout's (an editable install).
CODE = ("estimators", "experiments")


def copy_workflow(dest: Path, *, code: bool = False, study: dict | None = None) -> Path:
    """Copy the workflow (``WORKFLOW``; with ``code``, also ``CODE``) into ``dest`` and return ``dest``. An item
    already there is replaced, so a folder can be refreshed in place. With ``study``, that config is written to
    ``dest/study.yaml`` (as JSON, which YAML reads), for ``snakemake --configfile study.yaml``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for item in WORKFLOW + (CODE if code else ()):
        src, target = ROOT / item, dest / item
        if target.is_dir():
            shutil.rmtree(target)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, target)
    if study is not None:
        (dest / "study.yaml").write_text(json.dumps(study, indent=1, allow_nan=False))
    return dest
