import pytest
import torch


@pytest.fixture
def gen():
    """A fixed-seed CPU generator: every statistical test is deterministic."""
    return torch.Generator().manual_seed(1234)
