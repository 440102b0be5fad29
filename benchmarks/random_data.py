"""Random data of a real data set's size, for the benchmarks that build real runs without reading a file."""
from __future__ import annotations

import contextlib
from unittest import mock

import torch

from experiments.vae import data as data_mod

SEED = 20240607
N_TEST = 100  # one minibatch: the benchmarks time training, the test split only has to exist


def random_dataset(name: str, n_train: int, x_dim: int, device) -> data_mod.Dataset:
    """Uniform grey levels from a fixed generator, binarized per minibatch (``dynamic``) as digits/MNIST are."""
    gen = torch.Generator().manual_seed(SEED)
    train = torch.rand(n_train, x_dim, generator=gen).to(device)
    test = torch.bernoulli(torch.rand(N_TEST, x_dim, generator=gen), generator=gen).to(device)
    return data_mod.Dataset(name, train, test, dynamic=True)


@contextlib.contextmanager
def serving(dataset: data_mod.Dataset):
    """While it is open, every ``data.load`` returns ``dataset``: a ``Run`` or ``StackedRuns`` built inside reads
    no file."""
    with mock.patch.object(data_mod, "load", lambda *args, **kwargs: dataset):
        yield dataset
