"""Read a CIFAR-10 python batch file *without unpickling it*.

The ``cifar-10-batches-py`` files are pickles: a dict of bytes, lists of ints and one uint8
NumPy array.  ``pickle.load`` (even with a restricted ``find_class``) executes the file as a
program; a crafted file can forge an object-dtype array whose "pointers" are attacker bytes
and crash the process.  Here nothing is executed.  :func:`pickletools.genops` only *decodes*
the opcodes, and a small stack machine builds the few things a batch holds: None, bools,
ints, floats, str, bytes, tuples, lists, dicts, and NumPy arrays of a fixed allow-list of
plain numeric dtypes, rebuilt with ``np.frombuffer`` from the raw bytes.  Any other opcode,
any other global, or a structure that does not add up raises ValueError.
"""

from __future__ import annotations

import pickletools

import numpy as np

#: The only dtypes an array in a batch file may have (no objects, no structured types).
SAFE_DTYPES = frozenset({"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1"})

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}
_KNOWN = _RECONSTRUCT | _FROMBUFFER | {("numpy", "ndarray"), ("numpy", "dtype"),
                                       ("_codecs", "encode")}


class _Global:
    def __init__(self, module: str, name: str):
        if (module, name) not in _KNOWN:
            raise ValueError(f"refusing {module}.{name}: a CIFAR-10 batch holds only bytes, "
                             "lists, dicts and uint8 NumPy arrays")
        self.key = (module, name)


class _Dtype:
    """A dtype being built (REDUCE numpy.dtype, then BUILD with its byte order)."""

    def __init__(self, name):
        name = name.decode("latin-1") if isinstance(name, bytes) else name
        if name not in SAFE_DTYPES:
            raise ValueError(f"array dtype {name!r} is not allowed (expected one of "
                             f"{sorted(SAFE_DTYPES)})")
        self.dtype = np.dtype(name)

    def build(self, state) -> None:
        if not isinstance(state, tuple) or len(state) < 3 or state[2] is not None:
            raise ValueError("a dtype with fields or a malformed dtype state")
        order = state[1].decode() if isinstance(state[1], bytes) else state[1]
        if order not in ("<", ">", "|", "="):
            raise ValueError(f"bad byte order {order!r}")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


class _Array:
    """An array being built (REDUCE _reconstruct, then BUILD with shape, dtype, bytes)."""

    def build(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise ValueError("malformed array state")
        _, shape, dtype, fortran, raw = state
        return _array(raw, dtype, shape, "F" if fortran else "C")


def _array(raw, dtype, shape, order) -> np.ndarray:
    if not isinstance(dtype, _Dtype):
        raise ValueError("array without an allowed dtype")
    if isinstance(raw, str):  # Python 2 str read as latin-1 text
        raw = raw.encode("latin-1")
    if not isinstance(raw, (bytes, bytearray)):
        raise ValueError(f"array data is a {type(raw).__name__}, expected bytes")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"bad array shape {shape!r}")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if count * dtype.dtype.itemsize != len(raw):
        raise ValueError(f"array of shape {shape} and dtype {dtype.dtype} needs "
                         f"{count * dtype.dtype.itemsize} bytes, the file has {len(raw)}")
    return np.frombuffer(bytes(raw), dtype=dtype.dtype).reshape(shape, order=order)


def _reduce(func, args):
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise ValueError("a call of something that is not an allowed global")
    if func.key == ("numpy", "dtype"):
        return _Dtype(args[0])
    if func.key in _RECONSTRUCT:
        return _Array()
    if func.key in _FROMBUFFER:  # protocol 5: _frombuffer(bytes, dtype, shape, order)
        raw, dtype, shape, order = args
        return _array(raw, dtype, shape, order)
    if func.key == ("_codecs", "encode"):  # Python 3's protocol-2 pickle of bytes
        text, codec = args
        if not isinstance(text, str) or codec not in ("latin1", "latin-1"):
            raise ValueError("_codecs.encode with unexpected arguments")
        return text.encode("latin-1")
    raise ValueError(f"{func.key} cannot be called")


_PUSH_CONSTANT = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_DICT": dict,
                  "EMPTY_LIST": list, "EMPTY_TUPLE": tuple}
_IGNORED = {"PROTO", "FRAME"}
_SCALARS = {"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "BINFLOAT", "BINUNICODE",
            "SHORT_BINUNICODE", "BINUNICODE8", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8"}
_PY2_STRINGS = {"SHORT_BINSTRING", "BINSTRING"}  # Python 2 str: bytes, as encoding="bytes"


def parse_batch(blob: bytes):
    """The object a CIFAR-10 batch pickle describes, built without executing it.

    Returns what unpickling ``blob`` with ``encoding="bytes"`` would for an official file (a dict
    with keys ``b"data"`` (uint8 array (N, 3072)), ``b"labels"`` (list of N ints), ...).
    Raises ValueError for anything outside that small language.
    """
    stack, marks, memo, pending = [], [], {}, {}

    def pop_mark() -> list:
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    for opcode, arg, _ in pickletools.genops(blob):
        name = opcode.name
        if name in _IGNORED:
            continue
        if name == "STOP":
            if len(stack) != 1 or marks:
                raise ValueError("the pickle does not end with exactly one object")
            return stack[0]
        if name in _PUSH_CONSTANT:
            value = _PUSH_CONSTANT[name]
            stack.append(value() if callable(value) else value)
        elif name in _SCALARS:
            stack.append(arg)
        elif name in _PY2_STRINGS:
            stack.append(arg.encode("latin-1"))
        elif name == "BYTEARRAY8":
            stack.append(bytearray(arg))
        elif name == "MARK":
            marks.append(len(stack))
        elif name in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(memo) if name == "MEMOIZE" else arg
            memo[index] = stack[-1]
            if isinstance(stack[-1], _Array):  # to point at the array once it is built
                pending.setdefault(id(stack[-1]), []).append(index)
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "LIST":
            stack.append(pop_mark())
        elif name == "DICT":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        elif name == "APPEND":
            value = stack.pop()
            _as(stack[-1], list).append(value)
        elif name == "APPENDS":
            items = pop_mark()
            _as(stack[-1], list).extend(items)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            _as(stack[-1], dict)[_key(key)] = value
        elif name == "SETITEMS":
            items = pop_mark()
            target = _as(stack[-1], dict)
            for key, value in zip(items[::2], items[1::2], strict=True):
                target[_key(key)] = value
        elif name == "GLOBAL":
            module, _, attribute = arg.partition(" ")
            stack.append(_Global(module, attribute))
        elif name == "STACK_GLOBAL":
            attribute, module = stack.pop(), stack.pop()
            if not (isinstance(module, str) and isinstance(attribute, str)):
                raise ValueError("STACK_GLOBAL of non-strings")
            stack.append(_Global(module, attribute))
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            stack.append(_reduce(func, args))
        elif name == "BUILD":
            state, target = stack.pop(), stack[-1]
            if isinstance(target, _Dtype):
                target.build(state)
            elif isinstance(target, _Array):
                stack[-1] = target.build(state)
                for index in pending.pop(id(target), ()):  # memo references see the array
                    if memo.get(index) is target:
                        memo[index] = stack[-1]
            else:
                raise ValueError(f"BUILD on a {type(target).__name__}")
        else:
            raise ValueError(f"pickle opcode {name} is not used by CIFAR-10 batch files")
    raise ValueError("the pickle ends without a STOP opcode (truncated)")


def _as(value, kind):
    if not isinstance(value, kind):
        raise ValueError(f"expected a {kind.__name__} on the stack, found {type(value).__name__}")
    return value


def _key(key):
    if not isinstance(key, (str, bytes, int)):
        raise ValueError(f"a dict key of type {type(key).__name__}")
    return key
