"""Saving and loading state dicts and checkpoints: safetensors (or npz) + JSON, never pickle.

::

    minires.save(model.state_dict(), "resnet20.safetensors")   # plain tensors, torch-readable
    model.load_state_dict(minires.load("resnet20.safetensors"))
    minires.save(trainer.checkpoint(), "run/checkpoint.safetensors")  # nested: one file

**Nothing a user loads runs code.**  A pickle (the format of ``torch.save`` and of older
minires checkpoints) can call any function while it is read, so a checkpoint handed around a
class could run a command on every machine that opens it.  minires writes only two formats
whose readers parse data and nothing else:

* ``.safetensors`` (default): an 8-byte little-endian header length, a JSON header naming
  each tensor's dtype, shape and byte range, then the raw bytes.  A flat ``{name: array}``
  dict (a ``state_dict()``) becomes exactly those tensors, so ``safetensors.torch.load_file``
  reads a minires ResNet with torchvision's key names.  Any other structure of dicts, lists,
  tuples, str, int, float, bool, None and arrays (a training checkpoint) is split in two:
  every array becomes a tensor under a path-like key (``model/conv1.weight``,
  ``optimizer/state/0/momentum_buffer``) and the rest becomes a JSON *skeleton*, stored in
  the header's metadata, with ``{"__array__": key}`` where each array was.
* ``.npz`` (flat dicts only): ``np.savez``, read back with ``allow_pickle=False``.

The skeleton keeps what JSON alone would lose: tuples (``{"__tuple__": [...]}``), dicts with
non-string keys (``{"__dict__": [[key, value], ...]}``, e.g. the optimizer's parameter
indices), integers beyond 2**53 (``{"__int__": "digits"}``, e.g. a PCG64 generator's 128-bit
state), NaN/inf (``{"__float__": "nan"}``) and NumPy scalars (0-d tensors,
``{"__scalar__": key}``), so ``load(save(x)) == x`` down to the types.

**Nothing a user saved is lost or half-written**: every save writes a temporary file
``.<name>.XXXXXXXX.tmp`` in the same directory, flushes it to disk, then renames it over the
target; a rename within one directory is atomic, so an interrupted save leaves the previous
file intact.  Temporaries left by a killed save are removed at the next save of that path.

``safetensors`` is imported only inside :func:`save` and :func:`load`, so ``import minires``
needs NumPy alone.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from minires import backend
from minires.autograd import Tensor

__all__ = ["PICKLE_SUFFIXES", "atomic_write", "load", "load_state_dict", "save"]

#: Metadata keys of the safetensors header.
FORMAT_KEY = "minires.format"
SKELETON_KEY = "minires.skeleton"
ORDER_KEY = "minires.keys"
STATE_DICT_FORMAT = "minires.state_dict/1"
OBJECT_FORMAT = "minires.object/1"

#: File names that promise a pickle: never written, and refused on loading.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt")
_TAGS = ("__array__", "__scalar__", "__tuple__", "__dict__", "__int__", "__float__")
_EXACT_INT = 2**53  # beyond this a JSON reader outside Python may round an integer

_INSTALL_HINT = "pip install safetensors (it comes with `pip install minires`)"


# ---------------------------------------------------------------------------- writing


def _umask() -> int:
    current = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(current)
    return current


def _stale_temporaries(path: Path) -> list:
    """Temporaries ``.<name>.XXXXXXXX.tmp`` that an interrupted save of ``path`` left."""
    prefix, found = f".{path.name}.", []
    if not path.parent.is_dir():
        return found
    for entry in path.parent.iterdir():
        name = entry.name
        middle = name[len(prefix):-len(".tmp")]
        # mkstemp's random part has no dot: '.a.XXXX.tmp' is not a temporary of 'a.b'.
        if name.startswith(prefix) and name.endswith(".tmp") and middle and "." not in middle:
            found.append(entry)
    return found


def atomic_write(path, write) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``.

    The temporary is flushed and fsync'ed before the rename, so ``path`` holds either the
    previous contents or the complete new ones, never a mix.  Temporaries of ``path`` left
    by an earlier, killed save are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temporaries(path):
        stale.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private (0600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic)


def _host_array(value, where: str) -> np.ndarray:
    """``value`` (NumPy/CuPy array or minires Tensor) as a C-contiguous little-endian
    NumPy array of a dtype safetensors stores."""
    if isinstance(value, Tensor):
        value = value.data
    array = np.asarray(backend.to_numpy(value))
    if array.dtype.kind not in "biuf":
        raise TypeError(f"cannot save {where}: dtype {array.dtype} (bool, integer and "
                        "floating arrays can be saved)")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array if array.flags.c_contiguous else array.copy(order="C")  # keeps 0-d as 0-d


def _is_flat_array_dict(obj) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and _is_array(v) for k, v in obj.items())


def _encode(obj, where: str, tensors: dict):
    """The JSON skeleton of ``obj``; its arrays go into ``tensors`` (see the module doc)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
        key = _tensor_key(where, tensors)
        tensors[key] = _host_array(np.asarray(obj), where)
        return {"__scalar__": key}
    if isinstance(obj, int):
        return obj if -_EXACT_INT < obj < _EXACT_INT else {"__int__": str(obj)}
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else {"__float__": repr(obj)}
    if _is_array(obj):
        key = _tensor_key(where, tensors)
        tensors[key] = _host_array(obj, where)
        return {"__array__": key}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{where}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{where}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{where}/{k}", tensors) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, f"{where}/key", tensors),
                              _encode(v, f"{where}/{k}", tensors)] for k, v in obj.items()]}
    raise TypeError(f"cannot save {'entry ' + where if where else 'the object'}: a "
                    f"{type(obj).__name__}; minires.save "
                    "stores dicts, lists, tuples, str, int, float, bool, None and arrays "
                    "(no pickling of other objects: save their state_dict() instead)")


def _tensor_key(where: str, tensors: dict) -> str:
    key = where.lstrip("/") or "."
    while key in tensors:  # {"a/b": x, "a": {"b": y}} would collide
        key += "#"
    return key


def save(obj, path) -> Path:
    """Save ``obj`` to ``path`` atomically, as torch.save does, but without pickle.

    ``obj``: a flat ``{name: array}`` dict (a ``state_dict()``: saved as plain tensors with
    exactly those names), or any nesting of dict / list / tuple / str / int / float / bool /
    None / arrays (NumPy, CuPy or Tensors; moved to the CPU).  ``path``: ``.npz`` (flat dicts
    only) or any other name, written as safetensors (``.safetensors`` is the convention).
    Returns ``path``.  Raises TypeError for an object it cannot store, ValueError for a
    pickle-style name (``.pkl``, ``.pt``, ...), which would promise a format it is not.
    """
    path = Path(path)
    if path.suffix == ".npz":
        if not _is_flat_array_dict(obj):
            raise TypeError(f".npz files hold a flat {{name: array}} dict such as a "
                            f"state_dict(); save {type(obj).__name__} objects such as "
                            "checkpoints to a .safetensors path")
        arrays = {k: _host_array(v, k) for k, v in obj.items()}
        return atomic_write(path, lambda f: np.savez(f, **arrays))
    if path.suffix in PICKLE_SUFFIXES:
        raise ValueError(f"cannot save to {path}: {path.suffix} names a pickle file, which "
                         "minires no longer writes; use a .safetensors (or .npz) path")
    try:
        import safetensors.numpy
    except ImportError as err:
        raise ImportError(f"minires.save needs the safetensors package: {_INSTALL_HINT}") from err
    if _is_flat_array_dict(obj):
        tensors = {k: _host_array(v, k) for k, v in obj.items()}
        metadata = {FORMAT_KEY: STATE_DICT_FORMAT, ORDER_KEY: json.dumps(list(tensors))}
    else:
        tensors = {}
        skeleton = _encode(obj, "", tensors)
        metadata = {FORMAT_KEY: OBJECT_FORMAT,
                    SKELETON_KEY: json.dumps(skeleton, allow_nan=False, separators=(",", ":"))}
    blob = safetensors.numpy.save(tensors, metadata=metadata)
    return atomic_write(path, lambda f: f.write(blob))


# ---------------------------------------------------------------------------- reading


def _pickle_refused(path: Path) -> ValueError:
    return ValueError(
        f"{path} is a pickle file (a torch.save file or a checkpoint.pkl of an older minires). "
        "minires no longer reads pickles: loading one can run any code its author put in it. "
        "If you trust whoever made it, convert it once with the tool that wrote it, e.g. "
        "unpickle it yourself in a Python session and pass the object to "
        "`minires.save(obj, 'checkpoint.safetensors')` (an older minires's pickle), or "
        "`import torch, "
        f"safetensors.torch; safetensors.torch.save_file(torch.load({str(path)!r}, "
        "weights_only=True), 'weights.safetensors')` (a torch state dict); then load the "
        ".safetensors file.")


def _not_ours(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{path} is not a file minires.save wrote ({why}): expected safetensors (an 8-byte "
        "header length, a JSON header, the tensor bytes) or an .npz archive of arrays; the "
        "file may be truncated, corrupted or of another format")


def _sniff(path: Path) -> str:
    """'safetensors', 'npz' or 'pickle', from the file's first bytes (not its name)."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(9)
    # safetensors first: its header length is arbitrary, so its first byte may be 0x80.
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:1] == b"\x80":  # PROTO opcode: pickle protocol 2 and later
        return "pickle"
    if head[:4] == b"PK\x03\x04":  # a zip: np.savez, or torch.save's zip of data.pkl
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise _not_ours(path, f"a damaged zip archive: {err}") from err
        if any(name.endswith(".pkl") for name in names):
            return "pickle"
        return "npz"
    if len(head) == 9 and head[8:9] == b"{":
        header = int.from_bytes(head[:8], "little")
        if header > size - 8:
            raise _not_ours(path, f"its header claims {header} bytes but the file has "
                            f"{size} in all; it is truncated")
        return "safetensors"
    if path.suffix in PICKLE_SUFFIXES:  # pickle protocols 0 and 1 have no magic bytes
        return "pickle"
    raise _not_ours(path, f"it starts with {head[:8]!r}" if head else "it is empty")


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise _not_ours(path, f"an unreadable .npz: {err}") from err


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    try:
        from safetensors import safe_open
    except ImportError as err:
        raise ImportError(f"minires.load needs the safetensors package: {_INSTALL_HINT}") from err
    try:
        with safe_open(str(path), framework="np") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    except Exception as err:  # SafetensorError, or a dtype NumPy lacks (bfloat16)
        raise _not_ours(path, _truncation(path) or f"safetensors could not read it: {err}"
                        ) from err
    return tensors, metadata


def _truncation(path: Path) -> str | None:
    """'it is truncated (...)' when the header describes more tensor bytes than follow it."""
    try:
        with open(path, "rb") as file:
            length = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(length))
        needed = max((entry["data_offsets"][1] for key, entry in header.items()
                      if key != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, OSError):
        return None
    present = path.stat().st_size - 8 - length
    if needed <= present:
        return None
    return (f"it is truncated: its header describes {needed} bytes of tensor data, the file "
            f"holds {present}")


def _decode(node, tensors: dict, path: Path):
    if isinstance(node, list):
        return [_decode(v, tensors, path) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and next(iter(node)) in _TAGS:
        (tag, value), = node.items()
        try:
            if tag in ("__array__", "__scalar__"):
                array = tensors[value]
                return array[()] if tag == "__scalar__" else array
            if tag == "__tuple__":
                return tuple(_decode(v, tensors, path) for v in value)
            if tag == "__dict__":
                return {_hashable(_decode(k, tensors, path)): _decode(v, tensors, path)
                        for k, v in value}
            if tag == "__int__":
                return int(value)
            return float(value)  # __float__
        except (KeyError, TypeError, ValueError) as err:
            raise _not_ours(path, f"its skeleton has a bad {tag} entry {value!r:.80}") from err
    return {k: _decode(v, tensors, path) for k, v in node.items()}


def _hashable(key):
    if isinstance(key, (list, dict)) or _is_array(key):
        raise TypeError(f"dict key {key!r:.40} is not hashable")
    return key


def load(path):
    """Load what :func:`save` wrote (arrays come back as NumPy arrays).

    Returns a ``{name: array}`` dict for a state dict (also for any safetensors file, e.g.
    one written by ``safetensors.torch.save_file``) or the saved object, with its tuples,
    int/float types and NumPy scalars as they were.

    Raises FileNotFoundError when there is no file; ValueError, naming the file, for a pickle
    (refused: reading one can run code) and for a truncated, corrupted or foreign file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path.resolve()}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; expected a .safetensors or .npz file")
    kind = _sniff(path)
    if kind == "pickle":
        raise _pickle_refused(path)
    if kind == "npz":
        return _read_npz(path)
    tensors, metadata = _read_safetensors(path)
    if SKELETON_KEY in metadata:
        try:
            return _decode(json.loads(metadata[SKELETON_KEY]), tensors, path)
        except RecursionError as err:  # a crafted file nesting thousands of levels deep
            raise _not_ours(path, "its JSON skeleton is nested too deeply") from err
        except json.JSONDecodeError as err:
            raise _not_ours(path, f"its JSON skeleton does not parse: {err}") from err
    try:
        order = json.loads(metadata.get(ORDER_KEY, "[]"))
    except ValueError:
        order = []
    if isinstance(order, list) and sorted(map(str, order)) == sorted(tensors):
        return {key: tensors[key] for key in order}  # the state dict's own order
    return tensors


def load_state_dict(path) -> dict:
    """The model's ``{name: array}`` state dict stored in ``path``.

    ``path`` holds either a state dict (``minires.save(model.state_dict(), path)``, or any
    safetensors file of tensors) or a training checkpoint written by ``minires train`` /
    :class:`minires.train.Trainer` (its ``model`` entry).  Raises ValueError when it holds
    neither.
    """
    obj = load(path)
    if _is_flat_array_dict(obj):
        return dict(obj)
    if isinstance(obj, dict) and _is_flat_array_dict(obj.get("model")) and obj["model"]:
        return dict(obj["model"])
    found = (f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict)
             else f"a {type(obj).__name__}")
    raise ValueError(f"{path} holds {found}; expected a state dict ({{name: array}}) or a "
                     "training checkpoint with a 'model' state dict (as minires train writes)")
