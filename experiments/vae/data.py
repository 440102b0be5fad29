"""Data sets for the VAE study, verified by sha256 wherever they come from.

``load(name, data_dir=..., cache_dir=...)`` returns a :class:`Dataset` of flattened images in [0, 1]:

- ``digits``: scikit-learn's 8x8 digits (1797 images, shipped in its wheel, offline), grey levels / 16,
  dynamically binarized; a fixed 1500 / 297 train / test split.
- ``mnist``, ``fashion_mnist``: the canonical idx files, pixels / 255, dynamically binarized; 60k / 10k.
- ``binarized_mnist``: Larochelle & Murray's statically binarized MNIST, 50k / 10k valid / 10k test.

Each data set is one entry of ``DATASETS`` (at the end of this file): its files with their canonical URLs and
sha256, the reader that turns the verified files into its splits, the splits it has and whether its training
images are binarized anew. Every other list is derived from it (``WITH_VALIDATION``, the choices of
``RunConfig.dataset``); the study schema's enum (``workflow/schemas/config.schema.yaml``) must be a literal
list, and ``tests/test_data.py`` fails when it names other data sets.

Files come from ``data_dir`` (or the ``GRADVAR_DATA`` environment variable), a folder holding the same
files as the canonical hosts, either flat or in a sub-folder named after the data set; otherwise from
``cache_dir`` (``GRADVAR_CACHE``, default ``~/.cache/gradvar``), kept by pooch (``pooch.retrieve``): it
downloads a missing file from the canonical URLs (each mirror in turn) into a temporary file, checks its
sha256 and only then moves it into place, and fetches a cached file again when it no longer matches. Every
file is checked against its sha256 before use; for binarized MNIST the canonical files are uncompressed
``.amat`` text, so a local folder's ``.amat.gz`` copy is accepted and checked on its decompressed bytes
(this, and the folder's two layouts, are why a local folder is verified here, not by pooch). A missing,
corrupt or truncated file raises :class:`DataError` naming the file, the expected and actual checksums, and
what to do.

Dynamic binarization draws each pixel as Bernoulli(intensity) anew for every training minibatch (with
the run's generator); test sets of dynamically binarized data are binarized once with a fixed seed, so
every run and estimator is evaluated on the same binary test set.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from estimators import sampling

log = logging.getLogger("gradvar.data")

TEST_BINARIZATION_SEED = 20131220  # fixed: every run sees the same binary test set
SPLITS = (("train", "test"), ("train", "valid", "test"))  # a data set's splits: with a validation split or not
_CHUNK = 1 << 20


class DataError(RuntimeError):
    """A data file is missing, corrupt or truncated."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    sha256: str
    urls: tuple[str, ...]
    # True when the checksum is of the decompressed content (the canonical file is uncompressed, and a
    # gzip copy of it is accepted too).
    checksum_of_decompressed: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: its files (none for an embedded one), ``read(paths) -> {split: images}`` from the verified
    files (by name) to images ``[N, D]`` in [0, 1], its ``splits`` (``valid``: a canonical validation split, on
    which learning rates are selected), and ``dynamic``: grey levels, binarized anew for every training minibatch
    and once, with a fixed seed, for the other splits (else the images are binary already)."""

    read: Callable[[dict[str, Path]], dict[str, Tensor]]
    files: tuple[RemoteFile, ...] = ()
    splits: tuple[str, ...] = SPLITS[0]
    dynamic: bool = True

    def __post_init__(self):
        if self.splits not in SPLITS:
            raise ValueError(f"splits {self.splits} are none of {' or '.join(map(str, SPLITS))}")


@dataclass(frozen=True)
class Dataset:
    """Flattened images ``[N, D]`` in [0, 1]; ``test`` and ``valid`` are already binary; ``valid`` is the
    canonical validation split where the data set has one (``WITH_VALIDATION``), else None."""

    name: str
    train: Tensor
    test: Tensor
    dynamic: bool  # binarize train minibatches anew each time
    valid: Tensor | None = None

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    def binarize(self, batch: Tensor, generator: torch.Generator | None) -> Tensor:
        return sampling.bernoulli(batch, generator) if self.dynamic else batch


# --- verification ---------------------------------------------------------------------------------


def sha256_of(path: Path, decompress: bool = False) -> str:
    """sha256 of a file's bytes, or of its gzip-decompressed content."""
    digest = hashlib.sha256()
    try:
        opener = gzip.open if decompress else open
        with opener(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: cannot be read ({err}); the file is corrupt or truncated. "
                        f"Delete it and fetch it again.") from err
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile) -> Path:
    """Check ``path`` against ``remote``'s checksum; return it, or raise DataError."""
    decompress = remote.checksum_of_decompressed and path.suffix == ".gz"
    actual = sha256_of(path, decompress=decompress)
    if actual != remote.sha256:
        what = "decompressed content" if decompress else "file"
        raise DataError(
            f"{path}: sha256 of the {what} is {actual}, expected {remote.sha256} ({remote.name}); the file is "
            f"corrupt, truncated or not the canonical one. Delete it and fetch it again from {remote.urls[0]}."
        )
    return path


def _candidates(folder: Path, dataset: str, remote: RemoteFile) -> list[Path]:
    names = [remote.name] + ([remote.name + ".gz"] if remote.checksum_of_decompressed else [])
    return [d / n for d in (folder / dataset, folder) for n in names]


def _download(remote: RemoteFile, folder: Path) -> Path:
    """``remote`` in the cache ``folder``, verified: pooch keeps a matching copy, else downloads it from the first
    URL that serves the canonical bytes (into a temporary file, moved into place only once its sha256 matches)."""
    import pooch  # here, not at the top: only a job that downloads pays for importing it (and requests)

    errors = []
    for url in remote.urls:
        try:
            return Path(pooch.retrieve(url, known_hash=f"sha256:{remote.sha256}", fname=remote.name, path=folder))
        except (OSError, ValueError) as err:  # requests' errors are OSErrors; pooch's checksum mismatch a ValueError
            errors.append(f"{url}: {err}")
    raise DataError(f"could not fetch {remote.name}: " + "; ".join(errors)
                    + ". Without internet, pass data_dir (or set GRADVAR_DATA) to a folder with the canonical files.")


def _local_file(data_dir, dataset: str, remote: RemoteFile) -> Path:
    """The file of ``remote`` in ``data_dir`` (flat or in a sub-folder named after the data set)."""
    found = [p for p in _candidates(Path(data_dir), dataset, remote) if p.exists()]
    if not found:
        raise DataError(f"{remote.name} not found in {data_dir} (looked in {data_dir}/{dataset}/ and "
                        f"{data_dir}/); it is available from {remote.urls[0]}")
    return found[0]


def _files(dataset: str) -> tuple[RemoteFile, ...]:
    """The files of ``dataset``; none for an embedded or unknown one."""
    spec = DATASETS.get(dataset)
    return spec.files if spec is not None else ()


def check_present(dataset: str, data_dir: str | os.PathLike | None = None) -> None:
    """Raise the job's own ``DataError`` now if a local data folder lacks a file ``dataset`` needs (checked
    when a study is planned; the checksums are verified by the job that reads the files)."""
    data_dir = data_dir if data_dir is not None else os.environ.get("GRADVAR_DATA")
    if not _files(dataset) or data_dir is None:
        return  # embedded (digits), or downloaded with checksums by the job
    if not Path(data_dir).is_dir():
        raise DataError(f"data folder {data_dir} does not exist (needed for {dataset})")
    for remote in _files(dataset):
        _local_file(data_dir, dataset, remote)


def cache_folder(dataset: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloaded files of ``dataset`` are kept: ``cache_dir``, ``GRADVAR_CACHE`` or ``~/.cache/gradvar``."""
    return Path(cache_dir or os.environ.get("GRADVAR_CACHE") or Path.home() / ".cache" / "gradvar") / dataset


def to_download(dataset: str, data_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> list[RemoteFile]:
    """The files of ``dataset`` that ``fetch`` would download: those neither in a data folder nor in the cache
    (none for an embedded data set; with a data folder, ``check_present`` says what it lacks)."""
    data_dir = data_dir if data_dir is not None else os.environ.get("GRADVAR_DATA")
    if data_dir is not None:
        return []
    cache = cache_folder(dataset, cache_dir)
    return [remote for remote in _files(dataset) if not (cache / remote.name).exists()]


def fetch(dataset: str, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
          download: bool = True) -> dict[str, Path]:
    """Verified local paths of every file of ``dataset`` (see the module docstring for where from)."""
    if not _files(dataset):
        with_files = [name for name, spec in DATASETS.items() if spec.files]
        raise ValueError(f"no files to fetch for {dataset!r}; data sets with files: {', '.join(with_files)}")
    data_dir = data_dir if data_dir is not None else os.environ.get("GRADVAR_DATA")
    paths = {}
    for remote in _files(dataset):
        if data_dir is not None:
            paths[remote.name] = verify(_local_file(data_dir, dataset, remote), remote)
        elif download:
            paths[remote.name] = _download(remote, cache_folder(dataset, cache_dir))
        else:
            target = cache_folder(dataset, cache_dir) / remote.name
            if not target.exists():
                raise DataError(f"{target} is missing and download=False")
            paths[remote.name] = verify(target, remote)
    return paths


def load(name: str, data_dir=None, cache_dir=None, download: bool = True) -> Dataset:
    """The data set ``name`` (one of ``DATASETS``), verified."""
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    splits = spec.read(fetch(name, data_dir, cache_dir, download) if spec.files else {})
    if tuple(sorted(splits)) != tuple(sorted(spec.splits)):
        raise RuntimeError(f"data set {name}: its reader gave the splits {sorted(splits)}, its entry declares "
                           f"{list(spec.splits)}")  # a bug in the entry, not in the data
    once = _fixed_binarization if spec.dynamic else (lambda images: images)
    valid = splits.get("valid")
    return Dataset(name, splits["train"], once(splits["test"]), dynamic=spec.dynamic,
                   valid=None if valid is None else once(valid))


# --- parsing --------------------------------------------------------------------------------------


def read_idx_images(path: Path) -> np.ndarray:
    """An idx3 image file (gzip) as ``uint8 [N, rows * cols]``."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic, n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051 or len(data) != 16 + n * rows * cols:
        raise DataError(f"{path}: not an idx3 image file of the size its header gives")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols).copy()


def read_amat(path: Path, dim: int = 784) -> np.ndarray:
    """A binarized-MNIST ``.amat`` (or ``.amat.gz``): one image per line, ``dim`` 0/1 values, single spaces."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = np.frombuffer(fh.read(), dtype=np.uint8)
    if raw.size % (2 * dim):
        raise DataError(f"{path}: size {raw.size} is not a whole number of {dim}-value lines")
    lines = raw.reshape(-1, 2 * dim)
    if not (np.isin(lines[:, 1:-1:2], (ord(" "),)).all() and (lines[:, -1] == ord("\n")).all()):
        raise DataError(f"{path}: unexpected separators; expected {dim} values per line separated by single spaces")
    values = lines[:, ::2] - np.uint8(ord("0"))
    if values.max() > 1:
        raise DataError(f"{path}: values other than 0 and 1")
    return values


def _fixed_binarization(images: Tensor) -> Tensor:
    return torch.bernoulli(images, generator=torch.Generator().manual_seed(TEST_BINARIZATION_SEED))


#: scikit-learn's copy of the UCI digits (``sklearn/datasets/data/digits.csv.gz``, scikit-learn 1.9.1): 1797 rows
#: of 64 grey levels (0-16) and the label.
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


def digits_file() -> Path:
    """The digits file inside the installed scikit-learn, found without importing it (importing scikit-learn
    costs about 0.9 s of CPU, an eighth of a default VAE job, for a file ``np.loadtxt`` reads in milliseconds)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits data set is read from scikit-learn's wheel, and scikit-learn is not installed "
                        "(pip install scikit-learn==1.9.1)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def read_digits_images(path: Path) -> np.ndarray:
    """The digits' grey levels ``float64 [1797, 64]`` from ``digits.csv.gz``, as ``load_digits().data`` reads
    them (the same ``np.loadtxt`` on the same file)."""
    reinstall = "reinstall scikit-learn (pip install --force-reinstall scikit-learn==1.9.1)"
    if not path.exists():
        raise DataError(f"{path} is missing: scikit-learn's digits file; {reinstall}")
    actual = sha256_of(path)
    if actual != DIGITS_SHA256:
        raise DataError(f"{path}: sha256 {actual}, expected {DIGITS_SHA256} (scikit-learn 1.9.1's digits); "
                        f"{reinstall}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        table = np.loadtxt(fh, delimiter=",")
    if table.shape != (1797, 65):
        raise DataError(f"{path}: {table.shape[0]} x {table.shape[1]} values, expected 1797 x 65")
    return table[:, :-1]


def _read_digits(paths: dict[str, Path]) -> dict[str, Tensor]:
    images = torch.as_tensor(read_digits_images(digits_file()), dtype=torch.float32) / 16.0
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
    return {"train": images[order[:1500]], "test": images[order[1500:]]}


def _read_idx(paths: dict[str, Path]) -> dict[str, Tensor]:
    """MNIST's and Fashion-MNIST's idx image files (same names), pixels / 255."""
    return {split: torch.as_tensor(read_idx_images(paths[f"{prefix}-images-idx3-ubyte.gz"]), dtype=torch.float32)
            / 255.0 for split, prefix in (("train", "train"), ("test", "t10k"))}


def _read_binarized_mnist(paths: dict[str, Path]) -> dict[str, Tensor]:
    return {split: torch.as_tensor(read_amat(paths[f"binarized_mnist_{split}.amat"]), dtype=torch.float32)
            for split in ("train", "valid", "test")}


def remote_files(base_urls: tuple[str, ...], entries: list[tuple[str, str]], decompressed: bool = False):
    """``RemoteFile``s of ``(name, sha256)`` pairs found under each of ``base_urls`` (mirrors, first tried first)."""
    return tuple(RemoteFile(name, sha, tuple(u + name for u in base_urls), decompressed) for name, sha in entries)


# --- the data sets: one entry each ------------------------------------------------------------------
# Checksums as in ../shared/data/README.md (the offline copies); the canonical hosts first, mirrors after.

_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_BINARIZED_URLS = ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",)

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(_read_digits),
    "mnist": DatasetSpec(_read_idx, remote_files(_MNIST_URLS, [
        ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ])),
    "fashion_mnist": DatasetSpec(_read_idx, remote_files(_FASHION_URLS, [
        ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ])),
    "binarized_mnist": DatasetSpec(_read_binarized_mnist, remote_files(_BINARIZED_URLS, [
        ("binarized_mnist_train.amat", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
        ("binarized_mnist_valid.amat", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
        ("binarized_mnist_test.amat", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
    ], decompressed=True), splits=("train", "valid", "test"), dynamic=False),
}
#: The data sets with a canonical validation split (``Dataset.valid``), on which learning rates are selected.
WITH_VALIDATION = tuple(name for name, spec in DATASETS.items() if "valid" in spec.splits)
