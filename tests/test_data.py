"""Data files are verified by sha256 wherever they come from; bad files are refused clearly."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import threading
import typing
from pathlib import Path

import pytest
import torch
import yaml

from experiments.vae import data
from experiments.vae.run_config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"offline data copies not found at {SHARED}")


def test_digits_is_embedded_and_split():
    d = data.load("digits")
    assert d.train.shape == (1500, 64) and d.test.shape == (297, 64)
    assert set(d.test.unique().tolist()) <= {0.0, 1.0} and d.dynamic
    assert torch.equal(d.test, data.load("digits").test)  # the fixed test binarization


def test_digits_are_read_as_scikit_learn_reads_them_without_importing_it():
    from sklearn.datasets import load_digits

    ours = data.read_digits_images(data.digits_file())
    assert ours.dtype == load_digits().data.dtype and ours.tobytes() == load_digits().data.tobytes()
    code = "import sys; from experiments.vae import data; data.load('digits'); print('sklearn' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False"


def test_a_corrupt_or_missing_digits_file_is_refused(tmp_path):
    raw = gzip.decompress(data.digits_file().read_bytes())
    changed = tmp_path / "digits.csv.gz"
    assert raw.startswith(b"0,0,5,13,")
    changed.write_bytes(gzip.compress(b"0,0,5,12," + raw[len(b"0,0,5,13,"):]))  # one grey level, same shape
    with pytest.raises(data.DataError, match=r"sha256 [0-9a-f]{64}, expected 09f66e6d.*reinstall scikit-learn"):
        data.read_digits_images(changed)
    with pytest.raises(data.DataError, match="missing"):
        data.read_digits_images(tmp_path / "absent.csv.gz")


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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no line per request on stderr
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A canonical host on this machine: ``(folder, url)``, an HTTP server over ``folder``. pooch downloads over
    http(s), not from file:// URLs; the tests need no network."""
    monkeypatch.delenv("GRADVAR_DATA", raising=False)  # a local data folder would bypass the download
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")         # and a proxy from the environment the local server
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=folder))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


PAYLOAD = b"0 1 " * 391 + b"0 1\n"   # one binarized image, as an .amat line


def _tiny(monkeypatch, *files: data.RemoteFile) -> None:
    """A data set ``tiny`` of ``files`` in the registry, read as binarized MNIST is."""
    spec = data.DatasetSpec(lambda paths: {s: torch.as_tensor(data.read_amat(p)) for s, p in zip(("train", "test"),
                                                                                                  paths.values())},
                            files=files, dynamic=False)
    monkeypatch.setitem(data.DATASETS, "tiny", spec)


def test_download_verifies_and_caches(tmp_path, server, monkeypatch):
    """A good file lands in the cache and is read from there afterwards, with the host gone."""
    folder, url = server
    (folder / "tiny.amat").write_bytes(PAYLOAD)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    _tiny(monkeypatch, data.RemoteFile("tiny.amat", sha, (url + "tiny.amat",), True),
          data.RemoteFile("tiny_test.amat", sha, (url + "missing/tiny_test.amat", url + "tiny.amat")))
    cache = tmp_path / "cache"
    assert [r.name for r in data.to_download("tiny", cache_dir=cache)] == ["tiny.amat", "tiny_test.amat"]
    paths = data.fetch("tiny", cache_dir=cache)   # the second file from its second URL (a mirror): the first is 404
    assert paths == {"tiny.amat": cache / "tiny" / "tiny.amat", "tiny_test.amat": cache / "tiny" / "tiny_test.amat"}
    assert data.to_download("tiny", cache_dir=cache) == []
    (folder / "tiny.amat").unlink()               # the host has it no more: the cache serves
    loaded = data.load("tiny", cache_dir=cache)
    assert loaded.train.shape == (1, 784) and torch.equal(loaded.train, loaded.test)
    assert sorted(p.name for p in (cache / "tiny").iterdir()) == ["tiny.amat", "tiny_test.amat"]


def test_a_download_that_is_not_the_canonical_file_is_refused(tmp_path, server, monkeypatch):
    folder, url = server
    (folder / "bad.amat").write_bytes(PAYLOAD)
    _tiny(monkeypatch, data.RemoteFile("bad.amat", "0" * 64, (url + "bad.amat",), True))
    with pytest.raises(data.DataError, match=r"could not fetch bad.amat: http://127.0.0.1:\d+/bad.amat: SHA256 hash of "
                                             r"downloaded file \(bad.amat\) does not match the known hash: expected "
                                             r"sha256:0000.*Without internet, pass data_dir"):
        data.fetch("tiny", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []   # nothing kept, not even a partial download


def test_a_corrupt_cached_file_is_fetched_again(tmp_path, server, monkeypatch):
    folder, url = server
    (folder / "tiny.amat").write_bytes(PAYLOAD)
    _tiny(monkeypatch, data.RemoteFile("tiny.amat", hashlib.sha256(PAYLOAD).hexdigest(), (url + "tiny.amat",)))
    cached = data.cache_folder("tiny", tmp_path / "cache") / "tiny.amat"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD[:-10])
    with pytest.raises(data.DataError, match=r"tiny.amat: sha256 of the file is [0-9a-f]{64}, expected"):
        data.fetch("tiny", cache_dir=tmp_path / "cache", download=False)
    assert data.fetch("tiny", cache_dir=tmp_path / "cache") == {"tiny.amat": cached}
    assert cached.read_bytes() == PAYLOAD


def test_offline_names_every_url_tried(tmp_path, server, monkeypatch):
    _, url = server
    _tiny(monkeypatch, data.RemoteFile("gone.amat", "0" * 64, (url + "gone.amat", url + "mirror/gone.amat")))
    with pytest.raises(data.DataError) as err:
        data.fetch("tiny", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message and message.startswith("could not fetch gone.amat: ")
    assert f"{url}gone.amat: 404" in message and f"{url}mirror/gone.amat: 404" in message


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


def test_the_registry_is_the_only_list_of_data_sets():
    """A data set is one entry of ``data.DATASETS``: the run config's choices are built from it, and the study
    schema's enum (a literal list, as JSON Schema needs) must name the same data sets, in the same order."""
    assert typing.get_args(typing.get_type_hints(RunConfig)["dataset"]) == tuple(data.DATASETS)
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    enum = schema["properties"]["vae"]["properties"]["datasets"]["items"]["enum"]
    assert enum == list(data.DATASETS), "workflow/schemas/config.schema.yaml: vae.datasets' enum is not data.DATASETS"
    assert data.WITH_VALIDATION == tuple(n for n, spec in data.DATASETS.items() if "valid" in spec.splits)
    for spec in data.DATASETS.values():
        for remote in spec.files:
            assert len(remote.sha256) == 64 and remote.urls and all(u.endswith("/" + remote.name) for u in remote.urls)


def test_an_entry_is_checked_against_what_its_reader_gives(monkeypatch):
    with pytest.raises(ValueError, match=r"splits \('train',\) are none of \('train', 'test'\) or"):
        data.DatasetSpec(lambda paths: {}, splits=("train",))
    monkeypatch.setitem(data.DATASETS, "no_valid", data.DatasetSpec(lambda paths: {"train": torch.zeros(2, 3),
                                                                                 "test": torch.zeros(1, 3)},
                                                                    splits=("train", "valid", "test")))
    with pytest.raises(RuntimeError, match=r"no_valid: its reader gave the splits \['test', 'train'\], its entry "
                                           r"declares \['train', 'valid', 'test'\]"):
        data.load("no_valid")


def test_a_data_set_with_a_validation_split_may_be_dynamic(monkeypatch):
    """Grey-level splits other than train are binarized once, with the fixed seed (the same for every run)."""
    grey = torch.full((50, 4), 0.5)
    monkeypatch.setitem(data.DATASETS, "grey", data.DatasetSpec(lambda paths: {"train": grey, "valid": grey,
                                                                             "test": grey},
                                                                splits=("train", "valid", "test")))
    d = data.load("grey")
    assert torch.equal(d.train, grey) and set(d.valid.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(d.valid, data.load("grey").valid) and torch.equal(d.valid, d.test)


def test_the_readme_shows_a_real_entry():
    """The README's how-to ("Adding a data set") shows an entry of the registry as it is in data.py."""
    (block,) = re.findall(r"<!-- example-dataset: data.py -->\n```python\n(.*?)```", (ROOT / "README.md").read_text(),
                          flags=re.S)
    assert block.lstrip().startswith('"fashion_mnist": DatasetSpec(')
    assert block in (ROOT / "experiments" / "vae" / "data.py").read_text()
