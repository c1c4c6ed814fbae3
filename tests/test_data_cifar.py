"""CIFAR-10 loading from a tiny fake `cifar-10-batches-py`, and the download path (no network)."""

import hashlib
import io
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from minires.data import cifar
from minires.data.cifar import (
    CIFAR10_ENV_VAR,
    CIFAR10_FOLDER,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10_URL,
    download_cifar10,
    load_cifar10,
)

PER_FILE = 20
NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def fake_batch(seed, n=PER_FILE):
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"fake batch",
        b"labels": [int(v) for v in (np.arange(n) + seed) % 10],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [b"img%d.png" % i for i in range(n)],
    }


def write_batch(path, batch, protocol=2):
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def make_fake_cifar(parent, names=NAMES):
    """Write parent/cifar-10-batches-py with PER_FILE images per file; return the batches."""
    folder = parent / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate(names):
        batches[name] = fake_batch(i)
        write_batch(folder / name, batches[name], protocol=2 if i % 2 else 5)
    return batches


@pytest.fixture(autouse=True)
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv(CIFAR10_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "data"
    return root, make_fake_cifar(root)


def test_shapes_labels_and_raw_values(fake_root):
    root, batches = fake_root
    x, y = load_cifar10(root, "train", normalize=False)
    assert x.shape == (5 * PER_FILE, 3, 32, 32) and x.dtype == np.float32
    assert y.shape == (5 * PER_FILE,) and y.dtype == np.int64
    expected_y = np.concatenate([batches[n][b"labels"] for n in NAMES[:5]])
    np.testing.assert_array_equal(y, expected_y)
    first = batches["data_batch_1"][b"data"][0]
    # row layout: 1024 red values, then green, then blue, each 32x32 row-major
    np.testing.assert_allclose(x[0, 0], first[:1024].reshape(32, 32) / 255, rtol=1e-6)
    np.testing.assert_allclose(x[0, 2], first[2048:].reshape(32, 32) / 255, rtol=1e-6)
    xt, yt = load_cifar10(root, "test", normalize=False, dtype=np.float64)
    assert xt.shape == (PER_FILE, 3, 32, 32) and xt.dtype == np.float64
    np.testing.assert_array_equal(yt, batches["test_batch"][b"labels"])


def test_normalisation_is_per_channel(fake_root):
    root, _ = fake_root
    raw, _ = load_cifar10(root, "test", normalize=False, dtype=np.float64)
    z, _ = load_cifar10(root, "test", dtype=np.float64)
    mean = np.array(CIFAR10_MEAN)[None, :, None, None]
    std = np.array(CIFAR10_STD)[None, :, None, None]
    np.testing.assert_allclose(z, (raw - mean) / std, rtol=1e-12)


def test_constants_are_plausible():
    assert len(CIFAR10_MEAN) == len(CIFAR10_STD) == 3
    np.testing.assert_allclose(CIFAR10_MEAN, [0.4914, 0.4822, 0.4465], atol=1e-4)
    np.testing.assert_allclose(CIFAR10_STD, [0.2470, 0.2435, 0.2616], atol=1e-4)


def test_root_may_be_the_folder_itself(fake_root):
    root, _ = fake_root
    a, _ = load_cifar10(root / CIFAR10_FOLDER, "test")
    b, _ = load_cifar10(str(root), "test")
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("nested", [False, True])
def test_env_var(fake_root, monkeypatch, nested):
    root, batches = fake_root
    monkeypatch.setenv(CIFAR10_ENV_VAR, str(root / CIFAR10_FOLDER if nested else root))
    _, y = load_cifar10(split="test")
    np.testing.assert_array_equal(y, batches["test_batch"][b"labels"])
    # an explicit root wins over the environment variable
    with pytest.raises(FileNotFoundError):
        load_cifar10(root / "elsewhere", split="test")


def test_default_location_is_under_home(tmp_path):
    make_fake_cifar(tmp_path / "home" / ".minires" / "data")
    _, y = load_cifar10(split="test")
    assert y.shape == (PER_FILE,)


def test_missing_directory_message_names_the_path(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(missing)
    message = str(info.value)
    assert str(missing / CIFAR10_FOLDER) in message
    assert CIFAR10_URL in message and cifar.CIFAR10_TAR_MD5 in message
    assert "download=True" in message and CIFAR10_ENV_VAR in message


def test_missing_default_and_env_are_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="default") as info:
        load_cifar10()
    assert str(tmp_path / "home" / ".minires" / "data") in str(info.value)
    monkeypatch.setenv(CIFAR10_ENV_VAR, str(tmp_path / "env-dir"))
    with pytest.raises(FileNotFoundError, match=CIFAR10_ENV_VAR) as info:
        load_cifar10()
    assert str(tmp_path / "env-dir") in str(info.value)


def test_missing_single_file(fake_root):
    root, _ = fake_root
    (root / CIFAR10_FOLDER / "data_batch_4").unlink()
    load_cifar10(root, "test")  # the test split does not need it
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_cifar10(root, "train")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: {**b, b"data": b[b"data"][:, :3000]}, r"shape \(20, 3000\).*\(n, 3072\)"),
        (lambda b: {**b, b"data": b[b"data"].astype(np.int16)}, "uint8"),
        (lambda b: {**b, b"labels": b[b"labels"][:5]}, "20 integers"),
        (lambda b: {**b, b"labels": [12] * PER_FILE}, "labels range"),
        (lambda b: {b"data": b[b"data"]}, "b'labels'"),
        (lambda b: [b[b"data"]], "expected a dict"),
    ],
)
def test_corrupted_file_gives_clear_error(fake_root, corrupt, message):
    root, batches = fake_root
    path = root / CIFAR10_FOLDER / "data_batch_3"
    write_batch(path, corrupt(batches["data_batch_3"]))
    with pytest.raises(ValueError, match=message) as info:
        load_cifar10(root)
    assert "data_batch_3" in str(info.value) and "corrupted" in str(info.value)


def test_truncated_file(fake_root):
    root, _ = fake_root
    path = root / CIFAR10_FOLDER / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="test_batch is not a readable CIFAR-10 pickle"):
        load_cifar10(root, "test")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_cannot_run_code(fake_root, capsys):
    root, _ = fake_root
    write_batch(root / CIFAR10_FOLDER / "test_batch", {b"data": _Evil(), b"labels": []})
    with pytest.raises(ValueError, match=r"refusing to load (__builtin__|builtins)\.print"):
        load_cifar10(root, "test")
    assert "never run" not in capsys.readouterr().out


def test_md5_only_when_asked(fake_root):
    root, _ = fake_root
    load_cifar10(root, "test")
    with pytest.raises(ValueError, match="md5.*40351d587109b95175f43aff81a1287e"):
        load_cifar10(root, "test", verify_md5=True)


# --------------------------------------------------------------------------- download


def make_archive(tmp_path, names=NAMES, extra=None):
    """A .tar.gz of a fake cifar-10-batches-py; returns (file:// URL, md5)."""
    source = tmp_path / "source"
    make_fake_cifar(source, names)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / CIFAR10_FOLDER, arcname=CIFAR10_FOLDER)
        if extra is not None:
            info = tarfile.TarInfo(extra)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    return archive.as_uri(), hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_from_local_url(tmp_path, monkeypatch):
    url, md5 = make_archive(tmp_path)
    dest = tmp_path / "dest"
    folder = download_cifar10(dest, url=url, md5=md5)
    assert folder == dest / CIFAR10_FOLDER
    assert sorted(p.name for p in dest.iterdir()) == [CIFAR10_FOLDER]  # no temporary files
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
    # already there: returned without fetching anything
    assert download_cifar10(dest, url="file:///nonexistent", md5="0") == folder

    # load_cifar10(download=True) goes through the same path with the module's URL and md5
    monkeypatch.setattr(cifar, "CIFAR10_URL", url)
    monkeypatch.setattr(cifar, "CIFAR10_TAR_MD5", md5)
    x, y = load_cifar10(tmp_path / "dest2", "train", download=True)
    assert x.shape == (5 * PER_FILE, 3, 32, 32) and y.shape == (5 * PER_FILE,)


def test_download_md5_mismatch_leaves_nothing(tmp_path):
    url, _ = make_archive(tmp_path)
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="md5.*c58f30108f718f92721af3b95e74349a"):
        download_cifar10(dest, url=url)  # the real archive's md5
    assert list(dest.iterdir()) == []


def test_download_incomplete_archive_leaves_nothing(tmp_path):
    url, md5 = make_archive(tmp_path, names=NAMES[:3])
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="no complete"):
        download_cifar10(dest, url=url, md5=md5)
    assert list(dest.iterdir()) == []


def test_download_refuses_unsafe_paths(tmp_path):
    url, md5 = make_archive(tmp_path, extra=f"{CIFAR10_FOLDER}/../../escape.txt")
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="unsafe path"):
        download_cifar10(dest, url=url, md5=md5)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_download_without_network(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    dest = tmp_path / "dest"
    with pytest.raises(ConnectionError, match="could not download CIFAR-10 from https://"):
        load_cifar10(dest, download=True)
    assert list(dest.iterdir()) == []


def test_download_refuses_incomplete_existing_folder(tmp_path):
    dest = tmp_path / "dest"
    make_fake_cifar(dest, names=NAMES[:2])
    with pytest.raises(FileExistsError, match="incomplete.*remove it"):
        download_cifar10(dest, url="file:///nonexistent", md5="0")


def test_reads_pickles_written_by_numpy_1(fake_root, recwarn):
    # The official files were written by Python 2 and NumPy 1.x, whose arrays pickle as
    # numpy.core.multiarray._reconstruct (renamed numpy._core in NumPy 2).
    root, batches = fake_root
    blob = pickle.dumps(batches["test_batch"], protocol=2)
    assert b"numpy._core.multiarray\n_reconstruct" in blob
    blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    (root / CIFAR10_FOLDER / "test_batch").write_bytes(blob)
    x, y = load_cifar10(root, "test", normalize=False)
    np.testing.assert_array_equal(y, batches["test_batch"][b"labels"])
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
