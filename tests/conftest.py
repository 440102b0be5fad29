import os
from pathlib import Path

import pytest
import torch

from studies import copy_workflow

# Under pytest-xdist (the README's `pytest -q` runs one worker per core, see pyproject.toml) every worker is
# one process on one core: torch's own thread pool would put two threads on each core, and its threads spin
# while they wait for each other, which slows a loaded machine several-fold. One thread per worker, and the
# same for the programs a test starts (they inherit the environment), as the pipeline's rules pin theirs.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def gen():
    """A fixed-seed CPU generator: every statistical test is deterministic."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    """A copy of the workflow (``Snakefile``, ``workflow/``, ``profiles/``, ``config/``) in this test's temporary
    folder, where Snakemake runs without touching the checkout's ``results/``: ``studies.copy_workflow``."""
    return copy_workflow(tmp_path / "workflow")
