"""CIFAR-10, read from the standard ``cifar-10-batches-py`` pickle files.

CIFAR-10 (Krizhevsky, 2009) is not shipped with minires (163 MB).  Put the extracted
``cifar-10-batches-py`` folder (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) in a
directory and point minires at it, or let :func:`load_cifar10` fetch it with
``download=True``.  Where minires looks, in order:

1. the ``root`` argument;
2. the environment variable ``MINIRES_CIFAR10``;
3. ``~/.minires/data``.

Each may name the directory that *contains* ``cifar-10-batches-py`` or that folder itself.

The batch files are Python pickles.  They are read with a restricted unpickler that only
rebuilds NumPy arrays, lists, dicts and bytes, so a tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np

from minires.backend import get_default_dtype

CIFAR10_ENV_VAR = "MINIRES_CIFAR10"
CIFAR10_DEFAULT_ROOT = "~/.minires/data"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
#: md5 of the files in the official archive (checked when ``verify_md5=True``).
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
    """``base/cifar-10-batches-py`` if it exists, else ``base`` if it holds batch files."""
    nested = base / CIFAR10_FOLDER
    if nested.is_dir():
        return nested
    all_files = CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES
    if base.is_dir() and any((base / name).is_file() for name in all_files):
        return base
    return None


def cifar10_dir(root=None) -> Path:
    """The ``cifar-10-batches-py`` folder minires would read, without reading it.

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
        f"CIFAR-10 not found: looked for {base / CIFAR10_FOLDER} and in {base} "
        f"(from {origin}). Put the extracted '{CIFAR10_FOLDER}' folder (data_batch_1..5, "
        f"test_batch) in {parent}: download {CIFAR10_URL} (md5 {CIFAR10_TAR_MD5}) and run "
        f"`tar -xzf cifar-10-python.tar.gz -C {parent}`. Or point "
        f"${CIFAR10_ENV_VAR} or root= at the directory holding it, or call "
        "load_cifar10(..., download=True) to fetch it (163 MB)."
    )


# ------------------------------------------------------------------------ reading files


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds what a CIFAR-10 batch holds (NumPy arrays)."""

    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch holds only NumPy "
                "arrays, lists, dicts and bytes"
            )
        if module.startswith("numpy.core."):  # NumPy 1.x pickles; NumPy 2 renamed numpy.core
            try:
                return getattr(importlib.import_module("numpy._core" + module[10:]), name)
            except (ImportError, AttributeError):
                pass
        return super().find_class(module, name)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_batch(path: Path, verify_md5: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one batch file: (data uint8 (n, 3072), labels int64 (n,))."""
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-10 batch file {path} is missing: the folder {path.parent} should hold "
            f"{', '.join(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)} (from {CIFAR10_URL})"
        )
    if verify_md5:
        expected = CIFAR10_FILE_MD5.get(path.name)
        actual = _md5(path)
        if expected is not None and actual != expected:
            raise ValueError(
                f"CIFAR-10 batch file {path} is corrupted or not the official file: md5 "
                f"{actual}, expected {expected}; delete it and extract the archive again"
            )
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as err:  # truncated file, not a pickle, forbidden object, ...
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
    verify_md5: bool = False,
):
    """Load CIFAR-10 from the ``cifar-10-batches-py`` pickle files.

    Args:
        root: directory holding ``cifar-10-batches-py`` (or that folder itself); default
            ``$MINIRES_CIFAR10``, else ``~/.minires/data``.
        split: ``"train"`` (data_batch_1..5, 50,000 images) or ``"test"`` (test_batch,
            10,000 images).
        normalize: when True, standardise each channel with the training set's
            ``CIFAR10_MEAN`` / ``CIFAR10_STD``; when False, return pixels scaled to [0, 1].
        dtype: floating dtype of the images; defaults to
            :func:`minires.backend.get_default_dtype`.
        download: when the files are absent, fetch and extract them (see
            :func:`download_cifar10`).
        verify_md5: also check each file's md5 against the official archive's (off by
            default: the structure of every file is always checked).

    Returns:
        ``(images, labels)``: images (N, 3, 32, 32) in ``dtype``, channels R, G, B; labels
        int64 (N,) in 0..9 (names in ``CIFAR10_CLASSES``).

    Raises:
        FileNotFoundError: the files are absent (the message says where minires looked and
            where to put them).
        ValueError: a file is corrupted (wrong keys, shapes, dtypes, labels or md5).
    """
    if split not in CIFAR10_SPLITS:
        raise ValueError(f"unknown CIFAR-10 split {split!r}: expected one of {CIFAR10_SPLITS}")
    dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype (float32, float64, ...), got {dtype}")
    names = CIFAR10_TRAIN_FILES if split == "train" else CIFAR10_TEST_FILES

    base, origin = _base_dir(root)
    folder = _find_folder(base)
    if folder is None or not all((folder / name).is_file() for name in names):
        if download:
            folder = download_cifar10(base)
        elif folder is None:
            raise FileNotFoundError(_missing_message(base, origin))
        # else: _read_batch names the missing file

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
            _read_batch(extracted / name)
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
