"""CIFAR-10 loading from tiny fake `cifar-10-batches-py` / `-bin` folders, hostile files, and
the download path (no network).

The fakes are not the official files, so by default they would be refused by md5: an autouse
fixture registers each fake's md5 in ``CIFAR10_FILE_MD5`` (the default path, verification
included, is what runs), and tests that tamper with a file say ``verify_md5=False`` when
they test the parser behind the md5 check.
"""

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
from tests.hostile_files import PlantedCommand

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


OFFICIAL_MD5 = dict(cifar.CIFAR10_FILE_MD5)


def write_batch(path, batch, protocol=2, register=False):
    """Pickle ``batch`` to ``path``; with ``register``, accept its md5 as official."""
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    if register:
        cifar.CIFAR10_FILE_MD5[path.name] = hashlib.md5(path.read_bytes()).hexdigest()


def make_fake_cifar(parent, names=NAMES):
    """Write parent/cifar-10-batches-py with PER_FILE images per file; return the batches."""
    folder = parent / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate(names):
        batches[name] = fake_batch(i)
        write_batch(folder / name, batches[name], protocol=2 if i % 2 else 5, register=True)
    return batches


@pytest.fixture(autouse=True)
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv(CIFAR10_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(cifar, "CIFAR10_FILE_MD5", {})  # filled by make_fake_cifar


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
    write_batch(path, corrupt(batches["data_batch_3"]), register=True)
    with pytest.raises(ValueError, match=message) as info:
        load_cifar10(root)
    assert "data_batch_3" in str(info.value) and "corrupted" in str(info.value)


def test_truncated_file(fake_root):
    root, _ = fake_root
    path = root / CIFAR10_FOLDER / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="test_batch is corrupted or not the official file"):
        load_cifar10(root, "test")
    with pytest.raises(ValueError, match="test_batch is not a readable CIFAR-10 pickle"):
        load_cifar10(root, "test", verify_md5=False)


@pytest.mark.parametrize("protocol", [2, 5])
def test_planted_command_never_runs(fake_root, tmp_path, protocol):
    root, _ = fake_root
    marker = tmp_path / "pwned"
    path = root / CIFAR10_FOLDER / "test_batch"
    write_batch(path, {b"data": PlantedCommand(marker), b"labels": []}, protocol=protocol)
    with pytest.raises(ValueError, match="md5"):  # the default: not the official file
        load_cifar10(root, "test")
    # Even unverified, the file is decoded, never executed: the global is refused.
    with pytest.raises(ValueError, match=r"refusing (posix|os|nt)\.system"):
        load_cifar10(root, "test", verify_md5=False)
    assert not marker.exists()


@pytest.mark.parametrize("array", [
    np.array([1, "forged pointer"], dtype=object),  # what made the restricted unpickler crash
    np.zeros((2, 3072), dtype=[("a", "u1"), ("b", "O")]),  # an object hidden in a field
    np.zeros((2, 3072), dtype="V1"),
])
def test_forged_dtypes_are_refused(fake_root, array):
    root, batches = fake_root
    path = root / CIFAR10_FOLDER / "test_batch"
    write_batch(path, {**batches["test_batch"], b"data": array}, register=True)
    with pytest.raises(ValueError, match="test_batch is not a readable CIFAR-10 pickle"):
        load_cifar10(root, "test")


def test_random_corruptions_give_value_error(fake_root):
    # Flip bytes anywhere in a pickle (verification off): always a result or a ValueError,
    # never another exception or a crash.
    root, batches = fake_root
    path = root / CIFAR10_FOLDER / "test_batch"
    good = pickle.dumps(batches["test_batch"], protocol=2)
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    positions = np.concatenate([np.arange(200), rng.integers(0, len(good), 100)])
    for position in positions:
        blob = bytearray(good)
        blob[position] = int(rng.integers(0, 256))
        path.write_bytes(bytes(blob))
        try:
            load_cifar10(root, "test", verify_md5=False)
            outcomes["loaded"] += 1
        except ValueError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50 and sum(outcomes.values()) == len(positions)


def test_md5_checked_by_default(fake_root, monkeypatch):
    root, _ = fake_root
    monkeypatch.setattr(cifar, "CIFAR10_FILE_MD5", OFFICIAL_MD5)  # the real table
    with pytest.raises(ValueError, match="md5.*40351d587109b95175f43aff81a1287e"):
        load_cifar10(root, "test")
    with pytest.raises(ValueError, match="not the official file"):
        cifar.check_cifar10(root)
    load_cifar10(root, "test", verify_md5=False)


def test_official_md5_table():
    # The published md5 of each file of cifar-10-python.tar.gz (as torchvision lists them).
    assert OFFICIAL_MD5 == {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    }


def test_check_cifar10(fake_root, tmp_path):
    root, _ = fake_root
    assert cifar.check_cifar10(root) == root / CIFAR10_FOLDER
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        cifar.check_cifar10(tmp_path / "nowhere")
    (root / CIFAR10_FOLDER / "data_batch_2").write_bytes(b"tampered")
    cifar.check_cifar10(root, splits=("test",))
    with pytest.raises(ValueError, match="data_batch_2 is corrupted or not the official"):
        cifar.check_cifar10(root)


# --------------------------------------------------------------------------- binary version


def make_fake_binary(parent, records=PER_FILE):
    """parent/cifar-10-batches-bin with ``records`` records per file; returns the batches."""
    folder = parent / cifar.CIFAR10_BIN_FOLDER
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate(cifar.CIFAR10_BIN_TRAIN_FILES + cifar.CIFAR10_BIN_TEST_FILES):
        batch = fake_batch(i, records)
        labels = np.array(batch[b"labels"], dtype=np.uint8)[:, None]
        (folder / name).write_bytes(np.hstack([labels, batch[b"data"]]).tobytes())
        batches[name] = batch
    return batches


def test_binary_version(tmp_path):
    root = tmp_path / "data"
    batches = make_fake_binary(root)
    # The fakes are not 30,730,000 bytes: by default they are refused.
    with pytest.raises(ValueError, match="30730000"):
        load_cifar10(root, "test")
    x, y = load_cifar10(root, "train", normalize=False, verify_md5=False)
    assert x.shape == (5 * PER_FILE, 3, 32, 32) and y.dtype == np.int64
    np.testing.assert_array_equal(y[:PER_FILE], batches["data_batch_1.bin"][b"labels"])
    first = batches["data_batch_1.bin"][b"data"][0]
    np.testing.assert_allclose(x[0, 1], first[1024:2048].reshape(32, 32) / 255, rtol=1e-6)
    # Same images as the python version of the same batches.
    make_fake_cifar(tmp_path / "py")
    xp, yp = load_cifar10(tmp_path / "py", "train", normalize=False)
    np.testing.assert_array_equal(x, xp)
    np.testing.assert_array_equal(y, yp)


def test_binary_version_is_preferred_and_checked(tmp_path):
    root = tmp_path / "data"
    make_fake_cifar(root)
    make_fake_binary(root, records=3)
    _, y = load_cifar10(root, "test", verify_md5=False)
    assert y.shape == (3,)  # read from cifar-10-batches-bin
    path = root / cifar.CIFAR10_BIN_FOLDER / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="not a whole number of 3073-byte records"):
        load_cifar10(root, "test", verify_md5=False)
    labels = np.full((2, 1), 12, np.uint8)
    path.write_bytes(np.hstack([labels, np.zeros((2, 3072), np.uint8)]).tobytes())
    with pytest.raises(ValueError, match="labels range"):
        load_cifar10(root, "test", verify_md5=False)
    (root / cifar.CIFAR10_BIN_FOLDER / "data_batch_2.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_2.bin"):
        load_cifar10(root, "train", verify_md5=False)


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
    x, y = load_cifar10(root, "test", normalize=False, verify_md5=False)
    np.testing.assert_array_equal(y, batches["test_batch"][b"labels"])
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_parser_matches_pickle_on_what_a_batch_holds(protocol):
    # parse_batch builds, without executing anything, what pickle.loads would build.
    from minires.data.cifar_pickle import parse_batch

    batch = fake_batch(3)
    batch[b"alias"] = batch[b"data"]  # the same array twice: a memo reference
    batch["text"] = ("tuple", 1.5, None, True, -(2**70), [b"x"] * 3)
    batch[b"f8"] = np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3))
    blob = pickle.dumps(batch, protocol=protocol)
    parsed = parse_batch(blob)
    expected = pickle.loads(blob, encoding="bytes")
    assert parsed.keys() == expected.keys()
    for key in parsed:
        if isinstance(expected[key], np.ndarray):
            assert parsed[key].dtype == expected[key].dtype
            np.testing.assert_array_equal(parsed[key], expected[key])
        else:
            assert parsed[key] == expected[key]
    assert parsed[b"alias"] is parsed[b"data"]
