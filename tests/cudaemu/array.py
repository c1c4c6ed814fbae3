"""A stand-in for the ``cupy`` module on the CPU: device arrays that NumPy holds.

:class:`ndarray` wraps a NumPy array (``_host``) and behaves as a CuPy array does where
minires can tell: ``backend.device_of`` sees a CUDA array (its type's module starts with
"cupy"); ``.get()``, ``.item()``, ``float()`` and ``bool()`` are the only ways to the host,
and each calls ``_core.syncdetect._declare_synchronize()`` as CuPy does (so the tests that
count host copies work); implicit conversion (``np.asarray(a)``) raises TypeError, as does
mixing a NumPy array into a device operation; reductions return 0-d device arrays.
:data:`module` is the ``cupy`` stand-in; :data:`cupyx` the ``cupyx`` one.

New arrays from ``empty``/``empty_like`` are filled with NaN (floats) or 0xA5 bytes, so an
element a kernel forgot to write shows in the comparison with the CPU.
"""

from __future__ import annotations

import operator
import types

import numpy as np

_UNINITIALISED_BYTE = 0xA5


def _sync() -> None:
    module._core.syncdetect._declare_synchronize()  # looked up at run time, as in CuPy


def _reject_host(value):
    raise TypeError(f"Unsupported type {type(value)}: a NumPy array in an operation on "
                    "(emulated) CuPy arrays; CuPy refuses it too (move it with cupy.asarray)")


def unwrap(value, operand=False):
    """Device arrays -> their NumPy arrays, inside tuples, lists and dicts too.

    Host data in a device operation is refused as CuPy refuses it: a NumPy array of one or
    more dimensions as an ``operand`` (of a ufunc or operator), and a non-integer one as any
    other argument (integer ones are shapes, axes or indices, which CuPy takes from the host).
    """
    if isinstance(value, ndarray):
        return value._host
    if isinstance(value, np.ndarray):
        if value.ndim and (operand or value.dtype.kind not in "iu"):
            _reject_host(value)
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(unwrap(v, operand) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v, operand) for k, v in value.items()}
    return value


def wrap(value):
    """NumPy results -> device arrays (scalars become 0-d arrays, as CuPy's reductions)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(wrap(v) for v in value)
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def _index(index):
    """An index with device arrays unwrapped; NumPy index arrays are allowed (CuPy copies
    them to the device)."""
    if isinstance(index, ndarray):
        return index._host
    if isinstance(index, tuple):
        return tuple(_index(i) for i in index)
    return index


class ndarray:  # noqa: N801 - CuPy's name
    """A CuPy-like device array over a NumPy array (see the module docstring)."""

    __slots__ = ("_host",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, host):
        if not isinstance(host, np.ndarray):
            raise TypeError(f"emulated device arrays hold NumPy arrays, got {type(host)}")
        self._host = host

    # ------------------------------------------------------------------ to the host only explicitly
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def get(self, *args, **kwargs):
        _sync()
        return self._host.copy()

    def item(self, *args):
        _sync()
        return self._host.item(*args)

    def tolist(self):
        _sync()
        return self._host.tolist()

    def __float__(self):
        _sync()
        return float(self._host)

    def __int__(self):
        _sync()
        return int(self._host)

    def __bool__(self):
        _sync()
        return bool(self._host)

    def __index__(self):
        _sync()
        return operator.index(self._host)

    def __complex__(self):
        _sync()
        return complex(self._host)

    def __format__(self, spec):
        _sync()
        return format(self._host.item() if self._host.ndim == 0 else self._host, spec)

    def __repr__(self):
        return f"array({np.array2string(self._host, separator=', ')}, emulated device)"

    __str__ = __repr__

    # ------------------------------------------------------------------ NumPy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = unwrap(inputs, operand=True)
        if "out" in kwargs:
            kwargs["out"] = unwrap(kwargs["out"], operand=True)
        return wrap(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        return wrap(func(*unwrap(args), **unwrap(kwargs)))

    # ------------------------------------------------------------------ attributes
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    nbytes = property(lambda self: self._host.nbytes)
    itemsize = property(lambda self: self._host.itemsize)
    strides = property(lambda self: self._host.strides)
    flags = property(lambda self: self._host.flags)
    T = property(lambda self: ndarray(self._host.T))

    def __getattr__(self, name):
        if name.startswith("__"):  # __array_interface__ etc.: no silent way to the host
            raise AttributeError(name)
        value = getattr(self._host, name)
        if callable(value):
            def method(*args, **kwargs):
                return wrap(value(*unwrap(args), **unwrap(kwargs)))
            method.__name__ = name
            return method
        return wrap(value)

    def __len__(self):
        return len(self._host)

    def __iter__(self):
        return (wrap(row) for row in self._host)

    def __getitem__(self, index):
        return wrap(self._host[_index(index)])

    def __setitem__(self, index, value):
        # CuPy copies a NumPy value to the device here, so host values are allowed.
        value = value._host if isinstance(value, ndarray) else value
        self._host[_index(index)] = value

    def __copy__(self):
        return ndarray(self._host.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._host.copy())

    def __reduce__(self):
        raise TypeError("emulated device arrays are not pickled")


def _binary(ufunc):
    def forward(self, other):
        return wrap(ufunc(self._host, unwrap(other, operand=True)))

    def reflected(self, other):
        return wrap(ufunc(unwrap(other, operand=True), self._host))

    def in_place(self, other):
        ufunc(self._host, unwrap(other, operand=True), out=self._host)
        return self

    return forward, reflected, in_place


for _name, _ufunc in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                      ("truediv", np.true_divide), ("floordiv", np.floor_divide),
                      ("mod", np.remainder), ("pow", np.power), ("matmul", np.matmul),
                      ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor),
                      ("lshift", np.left_shift), ("rshift", np.right_shift)]:
    _f, _r, _i = _binary(_ufunc)
    setattr(ndarray, f"__{_name}__", _f)
    setattr(ndarray, f"__r{_name}__", _r)
    setattr(ndarray, f"__i{_name}__", _i)
for _name, _ufunc in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                      ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)]:
    setattr(ndarray, f"__{_name}__", _binary(_ufunc)[0])
for _name, _ufunc in [("neg", np.negative), ("pos", np.positive), ("abs", np.absolute),
                      ("invert", np.invert)]:
    setattr(ndarray, f"__{_name}__", lambda self, _u=_ufunc: wrap(_u(self._host)))
# backend.device_of looks at the type's module name ("cupy..."): this is a CuPy array to it.
ndarray.__module__ = "cupy_emulated"


# ---------------------------------------------------------------------------- the module


def _uninitialised(shape, dtype=float, order="C"):
    host = np.empty(shape, dtype=dtype, order=order)
    if host.dtype.kind in "fc":
        host.fill(np.nan)
    else:
        host.view(np.uint8).fill(_UNINITIALISED_BYTE)
    return ndarray(host)


def empty(shape, dtype=float, order="C"):
    """Like cupy.empty, but every element is NaN (floats) or 0xA5 bytes: unwritten shows."""
    return _uninitialised(shape, dtype, order)


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    """Like cupy.empty_like, filled as :func:`empty`."""
    return _uninitialised(a.shape if shape is None else shape,
                          a.dtype if dtype is None else dtype)


def asarray(a, dtype=None, order=None):
    """A device array: ``a`` itself when already one (cast if asked), else a copy."""
    if isinstance(a, ndarray):
        return ndarray(np.asarray(a._host, dtype=dtype, order=order))
    return ndarray(np.array(a, dtype=dtype, order=order, copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    """A new device array holding ``a`` (always a copy of host data)."""
    host = a._host if isinstance(a, ndarray) else a
    return ndarray(np.array(host, dtype=dtype, copy=copy or not isinstance(a, ndarray),
                            order=order, ndmin=ndmin))


def asnumpy(a, *args, **kwargs):
    """The host copy of a device array (NumPy input is returned as a NumPy array)."""
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*args):
    return module if any(isinstance(a, ndarray) for a in args) else np


def _numpy_function(function):
    def call(*args, **kwargs):
        return wrap(function(*unwrap(args), **unwrap(kwargs)))

    call.__name__ = getattr(function, "__name__", "function")
    call.__doc__ = f"(emulated) cupy.{call.__name__}, computed by NumPy"
    return call


class _Namespace(types.ModuleType):
    """A module whose missing attributes come from a NumPy module, wrapped for the device."""

    def __init__(self, name, numpy_module):
        super().__init__(name)
        self._numpy = numpy_module

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self._numpy, name)
        if isinstance(value, (type, np.ufunc, types.ModuleType)) or not callable(value):
            return value  # dtypes, ufuncs (they dispatch to ndarray.__array_ufunc__), constants
        return _numpy_function(value)


class _Random(types.ModuleType):
    """cupy.random: one seeded generator (seeded by minires.manual_seed)."""

    def __init__(self):
        super().__init__("cupy_emulated.random")
        self._state = np.random.RandomState(0)

    def seed(self, seed=None):
        self._state.seed(seed)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _numpy_function(getattr(self._state, name))


def _noop(*args, **kwargs):
    return None


class _Device:
    def __init__(self, index=0):
        self.id = index

    synchronize = _noop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


module = _Namespace("cupy_emulated", np)
module.__doc__ = "CuPy emulated on the CPU (tests/cudaemu): NumPy arrays behind a device type."
module.ndarray = ndarray
for _function in (empty, empty_like, asarray, array, asnumpy, get_array_module):
    setattr(module, _function.__name__, _function)
module.random = _Random()
module.linalg = _Namespace("cupy_emulated.linalg", np.linalg)
module.fft = _Namespace("cupy_emulated.fft", np.fft)
module.cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, deviceSynchronize=_noop),
    Device=_Device, is_available=lambda: True,
    Stream=types.SimpleNamespace(null=types.SimpleNamespace(synchronize=_noop)),
    get_current_stream=lambda: types.SimpleNamespace(synchronize=_noop))
module._core = types.SimpleNamespace(
    syncdetect=types.SimpleNamespace(_declare_synchronize=_noop))


def scatter_add(a, slices, value):
    """cupyx.scatter_add: ``a[slices] += value`` with repeated indices all added."""
    np.add.at(a._host, unwrap(slices), value._host if isinstance(value, ndarray) else value)


cupyx = types.ModuleType("cupyx")
cupyx.__doc__ = "cupyx emulated on the CPU (tests/cudaemu)."
cupyx.scatter_add = scatter_add
