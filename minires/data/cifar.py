"""CIFAR-10, read from the official binary or python files, with nothing executed.

CIFAR-10 (Krizhevsky, 2009) is not shipped with minires (163 MB).  Put the extracted
``cifar-10-batches-bin`` folder (``data_batch_1.bin`` .. ``data_batch_5.bin``,
``test_batch.bin``; the "binary version") or ``cifar-10-batches-py`` folder (``data_batch_1``
.. ``data_batch_5``, ``test_batch``; the "python version") in a directory and point minires
at it, or let :func:`load_cifar10` fetch the python version with ``download=True``.  Where
minires looks, in order:

1. the ``root`` argument;
2. the environment variable ``MINIRES_CIFAR10``;
3. ``~/.minires/data``.

Each may name the directory that *contains* the folder or that folder itself; with both
versions present the binary one is read.

**A file cannot be turned against the loader.**  The binary version is 10,000 records of
1 label byte + 3,072 pixel bytes per file, read with ``np.frombuffer``: there is nothing to
execute.  The python version's files are pickles, and are never unpickled: by default each
file's md5 must first equal the official one (``CIFAR10_FILE_MD5``, as torchvision lists
them), and then :func:`minires.data.cifar_pickle.parse_batch` decodes the opcodes without
executing them, building only bytes, lists, dicts and arrays of plain numeric dtypes.  The
dataset's authors publish no per-file md5 of the binary version (only of its archive,
``CIFAR10_BIN_TAR_MD5``), so its files are verified by their exact size and label range.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from minires.backend import get_default_dtype
from minires.data.cifar_pickle import parse_batch

CIFAR10_ENV_VAR = "MINIRES_CIFAR10"
CIFAR10_DEFAULT_ROOT = "~/.minires/data"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
CIFAR10_BIN_FOLDER = "cifar-10-batches-bin"
CIFAR10_BIN_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_BIN_TAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_BIN_TRAIN_FILES = tuple(f"{name}.bin" for name in CIFAR10_TRAIN_FILES)
CIFAR10_BIN_TEST_FILES = ("test_batch.bin",)
#: Size of each official binary batch file: 10,000 records of 1 + 3,072 bytes.
CIFAR10_BIN_FILE_SIZE = 10_000 * (1 + 3 * 32 * 32)
#: md5 of the python version's files in the official archive (checked by default).
CIFAR10_FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_SPLITS = ("train", "test")

#: Per-channel (R, G, B) mean and standard deviation of the 50,000 training images with
#: pixels scaled to [0, 1] (over all images and pixel positions).  ``normalize=True`` maps
#: each channel x -> (x - mean) / std.  He et al. (2016) subtract the per-pixel mean; the
#: per-channel mean/std used here is the common reimplementation of that preprocessing.
CIFAR10_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_STD = (0.24703223, 0.24348513, 0.26158784)

_PIXELS = 3 * 32 * 32
_CHUNK = 1 << 20


# ------------------------------------------------------------------------ locating files


def _base_dir(root) -> tuple[Path, str]:
    """The directory to search and a phrase saying where it came from."""
    if root is not None:
        return Path(root).expanduser(), "the root argument"
    env = os.environ.get(CIFAR10_ENV_VAR)
    if env:
        return Path(env).expanduser(), f"${CIFAR10_ENV_VAR}"
    return Path(CIFAR10_DEFAULT_ROOT).expanduser(), f"the default ({CIFAR10_DEFAULT_ROOT})"


def _find_folder(base: Path) -> Path | None:
    """``base/cifar-10-batches-bin`` or ``base/cifar-10-batches-py`` if it exists, else
    ``base`` if it holds batch files of either version."""
    for folder in (CIFAR10_BIN_FOLDER, CIFAR10_FOLDER):
        if (base / folder).is_dir():
            return base / folder
    all_files = (CIFAR10_BIN_TRAIN_FILES + CIFAR10_BIN_TEST_FILES + CIFAR10_TRAIN_FILES
                 + CIFAR10_TEST_FILES)
    if base.is_dir() and any((base / name).is_file() for name in all_files):
        return base
    return None


def _is_binary(folder: Path) -> bool:
    """Whether ``folder`` holds the binary version (``*.bin`` files)."""
    if folder.name == CIFAR10_BIN_FOLDER:
        return True
    if folder.name == CIFAR10_FOLDER:
        return False
    return any((folder / n).is_file() for n in CIFAR10_BIN_TRAIN_FILES + CIFAR10_BIN_TEST_FILES)


def _split_files(folder: Path, split: str) -> tuple:
    train, test = ((CIFAR10_BIN_TRAIN_FILES, CIFAR10_BIN_TEST_FILES) if _is_binary(folder)
                   else (CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILES))
    return train if split == "train" else test


def cifar10_dir(root=None) -> Path:
    """The ``cifar-10-batches-bin`` / ``-py`` folder minires would read, without reading it.

    Resolves ``root`` / ``$MINIRES_CIFAR10`` / ``~/.minires/data`` as :func:`load_cifar10`
    does.  Raises FileNotFoundError, naming the paths searched, when there is none.
    """
    base, origin = _base_dir(root)
    folder = _find_folder(base)
    if folder is None:
        raise FileNotFoundError(_missing_message(base, origin))
    return folder


def _missing_message(base: Path, origin: str) -> str:
    parent = base.parent if base.name == CIFAR10_FOLDER else base
    return (
        f"CIFAR-10 not found: looked for {base / CIFAR10_BIN_FOLDER}, "
        f"{base / CIFAR10_FOLDER} and in {base} "
        f"(from {origin}). Put the extracted '{CIFAR10_FOLDER}' folder (data_batch_1..5, "
        f"test_batch) in {parent}: download {CIFAR10_URL} (md5 {CIFAR10_TAR_MD5}) and run "
        f"`tar -xzf cifar-10-python.tar.gz -C {parent}`. Or point "
        f"${CIFAR10_ENV_VAR} or root= at the directory holding it, or call "
        "load_cifar10(..., download=True) to fetch it (163 MB). The binary version "
        f"({CIFAR10_BIN_URL}, md5 {CIFAR10_BIN_TAR_MD5}, folder '{CIFAR10_BIN_FOLDER}') "
        "works too."
    )


# ------------------------------------------------------------------------ reading files


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_file(path: Path) -> FileNotFoundError:
    names = _split_files(path.parent, "train") + _split_files(path.parent, "test")
    return FileNotFoundError(
        f"CIFAR-10 batch file {path} is missing: the folder {path.parent} should hold "
        f"{', '.join(names)} (from {CIFAR10_URL})")


def _verify(path: Path) -> None:
    """Refuse a file that is not the official one: md5 for the python version, exact size
    for the binary one (whose per-file md5s are not published).  Reads no content."""
    if not path.is_file():
        raise _missing_file(path)
    if path.suffix == ".bin":
        size = path.stat().st_size
        if path.name in CIFAR10_BIN_TRAIN_FILES + CIFAR10_BIN_TEST_FILES and \
                size != CIFAR10_BIN_FILE_SIZE:
            raise ValueError(
                f"CIFAR-10 batch file {path} is corrupted or not the official file: "
                f"{size} bytes, expected {CIFAR10_BIN_FILE_SIZE}; delete it and extract "
                f"{CIFAR10_BIN_URL} (md5 {CIFAR10_BIN_TAR_MD5}) again")
        return
    expected = CIFAR10_FILE_MD5.get(path.name)
    actual = _md5(path)
    if actual != expected:
        raise ValueError(
            f"CIFAR-10 batch file {path} is corrupted or not the official file: md5 "
            f"{actual}, expected {expected}; delete it and extract the archive again "
            "(it is not read: only the official files are)")


def check_cifar10(root=None, splits=CIFAR10_SPLITS) -> Path:
    """Check, without reading their contents, that the CIFAR-10 files of ``splits`` are
    there and official (md5 / size, as :func:`load_cifar10` does by default).

    Returns the folder.  Raises FileNotFoundError (absent; says where minires looked) or
    ValueError (a file that is not the official one).
    """
    folder = cifar10_dir(root)
    for split in splits:
        for name in _split_files(folder, split):
            _verify(folder / name)
    return folder


def _read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: records of 1 label byte + 3,072 pixel bytes, by np.frombuffer."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size == 0 or raw.size % (1 + _PIXELS):
        raise ValueError(
            f"CIFAR-10 batch file {path} is corrupted: {raw.size} bytes is not a whole number "
            f"of {1 + _PIXELS}-byte records (1 label byte + {_PIXELS} pixel bytes); delete it "
            "and extract the archive again")
    records = raw.reshape(-1, 1 + _PIXELS)
    return records[:, 1:], records[:, 0]


def _read_batch(path: Path, verify_md5: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one batch file: (data uint8 (n, 3072), labels int64 (n,))."""
    if not path.is_file():
        raise _missing_file(path)
    if verify_md5:
        _verify(path)
    if path.suffix == ".bin":
        batch = dict(zip((b"data", b"labels"), _read_binary_batch(path), strict=True))
    else:
        try:
            batch = parse_batch(path.read_bytes())
        except Exception as err:  # truncated, not a pickle, a forbidden object, ...
            raise ValueError(
                f"CIFAR-10 batch file {path} is not a readable CIFAR-10 pickle ({err}); "
                "delete it and extract the archive again"
            ) from err

    def bad(what: str) -> ValueError:
        return ValueError(
            f"CIFAR-10 batch file {path} is corrupted: {what}; delete it and extract the "
            "archive again"
        )

    if not isinstance(batch, dict):
        raise bad(f"expected a dict with keys b'data' and b'labels', got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise bad(f"expected keys b'data' and b'labels', found {sorted(map(repr, batch))}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise bad(f"'data' should be a uint8 array, got {getattr(data, 'dtype', type(data))}")
    if data.ndim != 2 or data.shape[1] != _PIXELS:
        raise bad(f"'data' has shape {data.shape}, expected (n, {_PIXELS}) (n images of 3x32x32)")
    try:
        labels = np.asarray(labels)
    except Exception as err:
        raise bad(f"'labels' is not a list of integers ({err})") from err
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
        raise bad(
            f"'labels' should be {data.shape[0]} integers (one per image), got shape "
            f"{labels.shape} dtype {labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise bad(f"labels range {labels.min()}..{labels.max()}, expected 0..9")
    return data, labels.astype(np.int64)


def load_cifar10(
    root=None,
    split: str = "train",
    normalize: bool = True,
    dtype=None,
    download: bool = False,
    verify_md5: bool = True,
):
    """Load CIFAR-10 from the ``cifar-10-batches-bin`` or ``cifar-10-batches-py`` files.

    Args:
        root: directory holding ``cifar-10-batches-bin`` or ``cifar-10-batches-py`` (or
            that folder itself); default
            ``$MINIRES_CIFAR10``, else ``~/.minires/data``.
        split: ``"train"`` (data_batch_1..5, 50,000 images) or ``"test"`` (test_batch,
            10,000 images).
        normalize: when True, standardise each channel with the training set's
            ``CIFAR10_MEAN`` / ``CIFAR10_STD``; when False, return pixels scaled to [0, 1].
        dtype: floating dtype of the images; defaults to
            :func:`minires.backend.get_default_dtype`.
        download: when the files are absent, fetch and extract them (see
            :func:`download_cifar10`).
        verify_md5: check first that each file is the official one (its md5 for the
            python version, its size for the binary one) and refuse any other (default).
            Pass False only for files you made yourself (tests, a subset); the structure of
            every file is always checked and nothing in it is ever executed.

    Returns:
        ``(images, labels)``: images (N, 3, 32, 32) in ``dtype``, channels R, G, B; labels
        int64 (N,) in 0..9 (names in ``CIFAR10_CLASSES``).

    Raises:
        FileNotFoundError: the files are absent (the message says where minires looked and
            where to put them).
        ValueError: a file is not the official one (md5 / size) or is corrupted (wrong
            keys, shapes, dtypes or labels).
    """
    if split not in CIFAR10_SPLITS:
        raise ValueError(f"unknown CIFAR-10 split {split!r}: expected one of {CIFAR10_SPLITS}")
    dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype (float32, float64, ...), got {dtype}")
    base, origin = _base_dir(root)
    folder = _find_folder(base)
    if folder is None or not all((folder / n).is_file() for n in _split_files(folder, split)):
        if download:
            folder = download_cifar10(base)
        elif folder is None:
            raise FileNotFoundError(_missing_message(base, origin))
        # else: _read_batch names the missing file
    names = _split_files(folder, split)

    parts = [_read_batch(folder / name, verify_md5=verify_md5) for name in names]
    data = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts])

    images = data.reshape(-1, 3, 32, 32).astype(dtype)
    images /= 255
    if normalize:
        images -= np.asarray(CIFAR10_MEAN, dtype=dtype)[:, None, None]
        images /= np.asarray(CIFAR10_STD, dtype=dtype)[:, None, None]
    return images, labels


def _is_complete(folder: Path) -> bool:
    return all((folder / n).is_file() for n in CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)


# ------------------------------------------------------------------------ downloading


def download_cifar10(root=None, url: str | None = None, md5: str | None = None) -> Path:
    """Download and extract CIFAR-10 into ``root`` (default as :func:`load_cifar10`).

    The archive is streamed to a temporary file beside the destination, its md5 checked,
    extracted into a temporary directory, every batch file checked, and only then the
    ``cifar-10-batches-py`` folder renamed into place in one step.  Whatever fails, no
    half-written dataset and no temporary file is left behind.

    Args:
        root: where to put ``cifar-10-batches-py`` (resolved as in :func:`load_cifar10`).
        url: the archive's address; default ``CIFAR10_URL`` (any URL urllib opens works,
            ``file://`` included).
        md5: the archive's expected md5; default ``CIFAR10_TAR_MD5``.

    Returns the path of the ``cifar-10-batches-py`` folder (already there: returned as is).

    Raises:
        ConnectionError: the URL could not be fetched (e.g. no network).
        ValueError: the archive's md5 is not ``md5``, or its contents are not CIFAR-10.
        FileExistsError: an incomplete ``cifar-10-batches-py`` folder is in the way.
    """
    import http.client
    import tarfile
    import urllib.error
    import urllib.request

    url = CIFAR10_URL if url is None else url
    md5 = CIFAR10_TAR_MD5 if md5 is None else md5
    base, _ = _base_dir(root)
    parent = base.parent if base.name == CIFAR10_FOLDER else base
    final = parent / CIFAR10_FOLDER
    if final.is_dir():
        if _is_complete(final):
            return final
        raise FileExistsError(
            f"{final} exists but is incomplete (it should hold "
            f"{', '.join(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)}); remove it and retry"
        )
    parent.mkdir(parents=True, exist_ok=True)

    archive = None
    workdir = None
    try:
        handle, archive_name = tempfile.mkstemp(
            prefix=".cifar-10-python.", suffix=".tar.gz.part", dir=parent
        )
        archive = Path(archive_name)
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                TimeoutError,
                ConnectionError,
            ) as err:
                raise ConnectionError(
                    f"could not download CIFAR-10 from {url} ({err}); check the network "
                    f"connection, or download the archive by hand and extract it into "
                    f"{parent} (see load_cifar10's error message for the steps)"
                ) from err
        if digest.hexdigest() != md5:
            raise ValueError(
                f"the archive downloaded from {url} has md5 {digest.hexdigest()}, expected "
                f"{md5}: the download is corrupted or not CIFAR-10; nothing was extracted"
            )

        workdir = Path(tempfile.mkdtemp(prefix=".cifar-10-extract.", dir=parent))
        with tarfile.open(archive, "r:gz") as tar:
            members = []
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if not parts or parts[0] != CIFAR10_FOLDER:
                    continue  # only the dataset folder is extracted
                if member.name.startswith("/") or ".." in parts:
                    raise ValueError(f"unsafe path {member.name!r} in the archive from {url}")
                if not (member.isfile() or member.isdir()):
                    raise ValueError(f"unexpected link {member.name!r} in the archive from {url}")
                members.append(member)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(workdir, members=members, filter="data")
            else:  # Python < 3.11.4; members were checked above
                tar.extractall(workdir, members=members)
        extracted = workdir / CIFAR10_FOLDER
        if not _is_complete(extracted):
            raise ValueError(
                f"the archive from {url} has no complete '{CIFAR10_FOLDER}' folder "
                f"(expected {', '.join(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)})"
            )
        for name in CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES:
            _read_batch(extracted / name, verify_md5=False)  # the archive's md5 was checked
        try:
            os.replace(extracted, final)  # atomic: the folder appears complete or not at all
        except OSError:
            if not _is_complete(final):  # not a concurrent download that finished first
                raise
        return final
    finally:
        if archive is not None:
            archive.unlink(missing_ok=True)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
