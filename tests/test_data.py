"""Data files are verified by sha256 wherever they come from; bad files are refused clearly."""
from __future__ import annotations

import gzip
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from experiments.vae import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"offline data copies not found at {SHARED}")


def test_digits_is_embedded_and_split():
    d = data.load("digits")
    assert d.train.shape == (1500, 64) and d.test.shape == (297, 64)
    assert set(d.test.unique().tolist()) <= {0.0, 1.0} and d.dynamic
    assert torch.equal(d.test, data.load("digits").test)  # the fixed test binarization


@needs_shared
@pytest.mark.parametrize("name, train, test", [("mnist", 60000, 10000), ("fashion_mnist", 60000, 10000),
                                               ("binarized_mnist", 50000, 10000)])
def test_local_folder_loads_verified(name, train, test):
    d = data.load(name, data_dir=SHARED)
    assert d.train.shape == (train, 784) and d.test.shape == (test, 784)
    assert float(d.train.min()) >= 0 and float(d.train.max()) <= 1
    assert set(d.test.unique().tolist()) == {0.0, 1.0}
    if name in data.WITH_VALIDATION:
        assert d.valid.shape == (10000, 784) and set(d.valid.unique().tolist()) == {0.0, 1.0}
        assert not any(torch.equal(d.valid[:100], other[:100]) for other in (d.train, d.test))
    else:
        assert d.valid is None


@needs_shared
def test_corrupt_file_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(SHARED / "mnist", folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    raw = bytearray(target.read_bytes())
    raw[-20] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte.gz: .*(corrupt|sha256)"):
        data.fetch("mnist", data_dir=tmp_path)


@needs_shared
def test_truncated_gzip_is_refused(tmp_path):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    for f in (SHARED / "binarized_mnist").iterdir():
        shutil.copy(f, folder / f.name)
    target = folder / "binarized_mnist_valid.amat.gz"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:5000])
    with pytest.raises(data.DataError, match="binarized_mnist_valid.amat.gz: cannot be read .*truncated"):
        data.fetch("binarized_mnist", data_dir=tmp_path)


def test_missing_file_names_the_source(tmp_path):
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz not found in .*available from https://"):
        data.fetch("mnist", data_dir=tmp_path)


def test_download_verifies_and_caches(tmp_path, monkeypatch):
    """The download path, against a file:// 'server': a good file lands in the cache, a bad one does not."""
    monkeypatch.delenv("GRADVAR_DATA", raising=False)  # a local data folder would bypass the download
    payload = b"0 1 " * 391 + b"0 1\n"
    served = tmp_path / "served.amat"
    served.write_bytes(payload)
    good = data.RemoteFile("tiny.amat", data.hashlib.sha256(payload).hexdigest(), (served.as_uri(),), True)
    monkeypatch.setitem(data.REMOTE_FILES, "tiny", {"tiny.amat": good})
    paths = data.fetch("tiny", cache_dir=tmp_path / "cache")
    assert paths["tiny.amat"] == tmp_path / "cache" / "tiny" / "tiny.amat"
    assert data.read_amat(paths["tiny.amat"]).shape == (1, 784)
    bad = replace(good, name="bad.amat", sha256="0" * 64)
    monkeypatch.setitem(data.REMOTE_FILES, "tiny", {"bad.amat": bad})
    with pytest.raises(data.DataError, match="could not fetch bad.amat: .*expected 0000"):
        data.fetch("tiny", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "tiny" / "bad.amat").exists()
    assert not list((tmp_path / "cache" / "tiny").glob("*.part"))


def test_amat_parser_checks_format(tmp_path):
    ok = tmp_path / "ok.amat"
    ok.write_bytes((b"1 " * 783 + b"0\n") * 2)
    assert data.read_amat(ok).sum() == 2 * 783
    with gzip.open(tmp_path / "ok.amat.gz", "wb") as fh:
        fh.write(ok.read_bytes())
    assert data.read_amat(tmp_path / "ok.amat.gz").shape == (2, 784)
    bad = tmp_path / "bad.amat"
    bad.write_bytes((b"1," * 783 + b"0\n"))
    with pytest.raises(data.DataError, match="unexpected separators"):
        data.read_amat(bad)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data set 'omniglot'; available: digits, mnist"):
        data.load("omniglot")
