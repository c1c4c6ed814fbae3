"""CuPy's ``RawModule``/``RawKernel`` on the CPU: the ``.cu`` text compiled by g++.

``RawModule(code=..., name_expressions=["im2col_kernel<float>", ...])`` parses the
signature of every ``__global__`` function in the code, writes one translation unit (the
shim header ``cudaemu.h``, the code exactly as given, one ``extern "C"`` launcher per name
expression, which is also the explicit instantiation) and builds it into a shared library
with g++.  The library is cached under :func:`cache_dir`, keyed by a hash of everything
that went into it, so a second run (or a second test process) does not compile again.

A launch ``kernel(grid, block, args, shared_mem=0)`` checks what a GPU would not (see
docs/cuda-emulation.md): the number and C types of the arguments against the kernel's
signature (a Python int arrives as int64, a Python float as double, as in CuPy), CUDA's
launch limits, C-contiguous array arguments; it runs the kernel on copies of the array
arguments that sit between guard zones, and reports a write into a guard zone (out of
bounds) as an error; then it copies the results back.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tests.cudaemu import array as emu

HEADER = Path(__file__).with_name("cudaemu.h")
CXX_FLAGS = ("-std=c++14", "-O2", "-shared", "-fPIC", "-w", "-fno-extern-tls-init")
#: CUDA's limits (compute capability 7.0 and later).
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_SHARED_BYTES = 48 * 1024  # dynamic shared memory without an opt-in attribute
#: Elements of guard zone on each side of every array argument.
GUARD_BYTES = 16 * 1024

# C type of a by-value argument or of a pointer's target -> the NumPy dtype it must have.
C_DTYPES = {
    "float": np.float32, "double": np.float64, "int": np.int32, "unsigned int": np.uint32,
    "unsigned": np.uint32, "long long": np.int64, "long": np.int64,
    "unsigned long long": np.uint64, "size_t": np.uint64, "short": np.int16,
    "unsigned char": np.uint8, "char": np.int8, "signed char": np.int8, "bool": np.bool_,
    "int64_t": np.int64, "int32_t": np.int32, "uint32_t": np.uint32,
}
# A guard-zone canary per element size: signalling-NaN bit patterns for floats (arithmetic
# never produces them, and a stray read of one gives NaN), a large negative int otherwise.
_CANARY = {np.dtype(np.float32): np.array([0x7FA5A5A5], np.uint32).view(np.uint8),
           np.dtype(np.float64): np.array([0x7FF4A5A5A5A5A5A5], np.uint64).view(np.uint8)}

_SIGNATURE = re.compile(
    r"(?:template\s*<\s*typename\s+(\w+)\s*>\s*)?__global__\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{")
_SHARED = re.compile(r"extern\s+__shared__\s+([\w\s]+?)\s+(\w+)\s*\[\s*\]")
_DEVICE_FUNCTION = re.compile(r"__device__[^;{(]*?\b(\w+)\s*\([^)]*\)\s*\{")


class CompileError(RuntimeError):
    """g++ refused the code (a kernel using something the emulation leaves undefined, or a
    plain C++ error); the message holds the compiler's output."""


class LaunchError(RuntimeError):
    """A launch the emulation refused or a kernel it stopped (out-of-bounds write, barrier
    reached by only some threads, ...)."""


def cache_dir() -> Path:
    """Where built libraries are kept: $MINIRES_CUDAEMU_CACHE, else a per-user temp folder."""
    folder = os.environ.get("MINIRES_CUDAEMU_CACHE") or os.path.join(
        tempfile.gettempdir(), f"minires-cudaemu-{os.getuid()}")
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def compiler() -> str:
    """The C++ compiler: $CXX or g++; a RuntimeError naming what to install when missing."""
    name = os.environ.get("CXX", "g++")
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"the CUDA emulation needs a C++ compiler ({name!r} not found; "
                           "install g++ or set CXX)")
    return found


def _body(code: str, start: int) -> str:
    """The text of the brace-delimited block whose '{' is at code[start - 1]."""
    depth, i = 1, start
    while depth and i < len(code):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        i += 1
    return code[start:i]


def _uses_barrier(code: str, body: str) -> bool:
    """Whether a kernel body reaches __syncthreads(), directly or through __device__
    functions of the same code (followed transitively by name)."""
    functions = {m.group(1): _body(code, m.end()) for m in _DEVICE_FUNCTION.finditer(code)}
    seen, todo = set(), [body]
    while todo:
        text = todo.pop()
        if "__syncthreads" in text:
            return True
        for name, inner in functions.items():
            if name not in seen and re.search(rf"\b{name}\s*\(", text):
                seen.add(name)
                todo.append(inner)
    return False


class _Param:
    def __init__(self, text: str, template: str | None, c_type: str | None):
        text = " ".join(text.replace("__restrict__", " ").replace("*", " * ").split())
        *type_words, self.name = text.split(" ")
        self.pointer = "*" in type_words
        words = [w for w in type_words if w not in ("const", "*", "volatile")]
        words = [c_type if w == template else w for w in words]
        self.base = " ".join(words)
        if self.base not in C_DTYPES:
            raise CompileError(f"the emulation does not know the C type {self.base!r} of "
                               f"parameter {self.name!r}")
        self.dtype = np.dtype(C_DTYPES[self.base])
        const = "const " if "const" in type_words else ""
        self.c_decl = f"{const}{self.base}*" if self.pointer else self.base

    def describe(self) -> str:
        return f"{self.base}{'*' if self.pointer else ''} {self.name}"


class _Kernel:
    """What the generator knows of one kernel instantiation."""

    def __init__(self, expression, name, template, c_type, params_text, barriers, symbol):
        self.expression, self.name, self.symbol = expression, name, symbol
        self.params = [_Param(p, template, c_type) for p in params_text.split(",") if p.strip()]
        self.barriers = barriers

    def launcher(self) -> str:
        unpack = "\n".join(f"    {p.c_decl} a{i} = *reinterpret_cast<{p.c_decl}*>(args[{i}]);"
                           for i, p in enumerate(self.params))
        call_args = ", ".join(f"a{i}" for i in range(len(self.params)))
        return (f'extern "C" int {self.symbol}(const unsigned int* grid, '
                f"const unsigned int* block, unsigned int shared_bytes, void** args)\n{{\n"
                f"{unpack}\n"
                f"    auto body = [&]() {{ {self.expression}({call_args}); }};\n"
                f"    cudaemu_bind_shared();\n"
                f"    return cudaemu::run_grid(grid, block, shared_bytes, {int(self.barriers)}, "
                f"body);\n}}\n")


def _parse(code: str, name_expressions) -> list:
    found = {}
    for match in _SIGNATURE.finditer(code):
        template, name, params = match.groups()
        found[name] = (template, params, _uses_barrier(code, _body(code, match.end())))
    kernels = []
    for index, expression in enumerate(name_expressions):
        match = re.fullmatch(r"\s*(\w+)\s*(?:<\s*([\w ]+?)\s*>)?\s*", expression)
        if match is None or match.group(1) not in found:
            raise CompileError(f"name expression {expression!r} names no __global__ function "
                               f"of the code (found: {sorted(found)})")
        name, c_type = match.groups()
        template, params, barriers = found[name]
        if (template is None) != (c_type is None):
            raise CompileError(f"name expression {expression!r} does not match the template "
                               f"parameters of {name}")
        kernels.append(_Kernel(expression.strip(), name, template, c_type, params, barriers,
                               f"cudaemu_launch_{index}"))
    return kernels


def _translation_unit(code: str, kernels, filename: str) -> str:
    shared = {name: c_type.strip() for c_type, name in _SHARED.findall(code)}
    if len(shared) > 1:
        raise CompileError(f"the emulation takes one `extern __shared__` array per source, "
                           f"found {sorted(shared)}")
    definitions = "".join(
        f"alignas(16) thread_local {c_type} {name}[{MAX_SHARED_BYTES} / sizeof({c_type})];\n"
        for name, c_type in shared.items())
    bind = ("\n".join(f"    cudaemu::dynamic_shared = reinterpret_cast<unsigned char*>({name});\n"
                      f"    cudaemu::dynamic_shared_size = sizeof {name};"
                      for name in shared) or "")
    return (f'#include "{HEADER}"\n{definitions}\n#line 1 "{filename}"\n{code}\n'
            f"#line 1 \"cudaemu-launchers\"\nstatic void cudaemu_bind_shared()\n{{\n{bind}\n}}\n"
            + "\n".join(k.launcher() for k in kernels))


def build(code: str, name_expressions, filename: str = "kernel.cu"):
    """Compile ``code`` with launchers for ``name_expressions``; returns (kernels, library)."""
    kernels = _parse(code, name_expressions)
    unit = _translation_unit(code, kernels, filename)
    cxx = compiler()
    key = hashlib.sha256("\0".join((unit, HEADER.read_text(), cxx, *CXX_FLAGS)).encode())
    library = cache_dir() / f"{key.hexdigest()[:24]}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir()) as work:
            source = Path(work, "unit.cpp")
            source.write_text(unit)
            out = Path(work, "unit.so")
            result = subprocess.run([cxx, *CXX_FLAGS, "-o", str(out), str(source)],
                                    capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                raise CompileError(f"g++ could not build {filename} for the emulation:\n"
                                   f"{result.stderr[-6000:]}")
            os.replace(out, library)  # atomic: a parallel run never loads a half-written file
    lib = ctypes.CDLL(str(library))
    lib.cudaemu_last_error.restype = ctypes.c_char_p
    return kernels, lib


# ---------------------------------------------------------------------------- launching


def _dims(value, what: str) -> tuple:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) for d in dims):
        raise LaunchError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def _check_launch(name, grid, block, shared_mem) -> None:
    if any(d < 1 for d in grid + block):
        raise LaunchError(f"{name}: grid {grid} and block {block} need every dimension >= 1 "
                          "(a GPU fails with 'invalid configuration argument')")
    if block[0] * block[1] * block[2] > MAX_THREADS_PER_BLOCK:
        raise LaunchError(f"{name}: block {block} has {block[0] * block[1] * block[2]} threads, "
                          f"more than CUDA's {MAX_THREADS_PER_BLOCK} per block")
    for axis, (got, limit, which) in enumerate(zip(block + grid, MAX_BLOCK + MAX_GRID,
                                                   ["block"] * 3 + ["grid"] * 3, strict=True)):
        if got > limit:
            raise LaunchError(f"{name}: {which}Dim.{'xyz'[axis % 3]} = {got} exceeds CUDA's "
                              f"limit {limit}")
    if not 0 <= shared_mem <= MAX_SHARED_BYTES:
        raise LaunchError(f"{name}: shared_mem = {shared_mem} bytes, CUDA allows 0 to "
                          f"{MAX_SHARED_BYTES} without an opt-in")


def _scalar(param, value, name, index):
    """A by-value argument as a ctypes object, after checking its type as CuPy passes it."""
    if isinstance(value, bool):
        got = np.dtype(np.bool_)
    elif isinstance(value, int):
        got = np.dtype(np.int64)  # CuPy passes a Python int as a 64-bit integer
    elif isinstance(value, float):
        got = np.dtype(np.float64)
    elif isinstance(value, np.generic):
        got = value.dtype
    else:
        raise TypeError(f"{name}: argument {index} ({param.describe()}) must be a NumPy scalar "
                        f"of dtype {param.dtype}, got {type(value).__name__}")
    if got != param.dtype:
        note = ", which CuPy passes as int64" if type(value) is int else ""
        raise TypeError(f"{name}: argument {index} ({param.describe()}) needs dtype "
                        f"{param.dtype}, got {got} ({type(value).__name__}{note})")
    return np.ctypeslib.as_ctypes_type(param.dtype)(value)


@functools.cache
def _guard(dtype) -> np.ndarray:
    """GUARD_BYTES of the canary of ``dtype`` (read-only)."""
    guard = np.resize(_CANARY.get(dtype, np.array([0xA5], np.uint8)), GUARD_BYTES)
    guard.flags.writeable = False
    return guard


class _Staged:
    """Array arguments copied between guard zones; overlapping arguments share one copy."""

    def __init__(self, arrays):
        ranges = sorted((a.__array_interface__["data"][0], a.nbytes, i)
                        for i, a in enumerate(arrays))
        self.groups, self.offset_of = [], {}
        for start, nbytes, i in ranges:
            if self.groups and start < self.groups[-1][1]:
                group = self.groups[-1]
                group[1] = max(group[1], start + nbytes)
            else:
                self.groups.append([start, start + nbytes, arrays[i].dtype, []])
            self.groups[-1][3].append(i)
        self.buffers, self.pointers = [], [0] * len(arrays)
        for start, end, dtype, members in self.groups:
            guard = _guard(dtype)
            buffer = np.empty(2 * GUARD_BYTES + (end - start), np.uint8)
            buffer[:GUARD_BYTES] = guard
            buffer[GUARD_BYTES + end - start:] = guard
            ctypes.memmove(buffer.ctypes.data + GUARD_BYTES, start, end - start)
            self.buffers.append((buffer, guard, guard))
            for i in members:
                self.pointers[i] = (buffer.ctypes.data + GUARD_BYTES
                                    + arrays[i].__array_interface__["data"][0] - start)

    def finish(self, name, params, array_index):
        """Copy results back, after checking every guard zone."""
        pairs = zip(self.groups, self.buffers, strict=True)
        for (start, end, _, members), (buffer, before, after) in pairs:
            size = end - start
            for zone, expected, where in ((buffer[:GUARD_BYTES], before, "before the start"),
                                          (buffer[GUARD_BYTES + size:], after, "past the end")):
                changed = np.flatnonzero(zone != expected)
                if changed.size:
                    byte = (GUARD_BYTES - changed[-1]) if where == "before the start" else (
                        changed[0] + 1)
                    who = ", ".join(params[array_index[i]].describe() for i in members)
                    raise LaunchError(f"{name} wrote out of bounds of argument {who}: "
                                      f"{changed.size} bytes changed {where} (the nearest "
                                      f"{byte} bytes {where.split()[0]} it)")
        for (start, end, _, _), (buffer, _, _) in zip(self.groups, self.buffers, strict=True):
            ctypes.memmove(start, buffer.ctypes.data + GUARD_BYTES, end - start)


class RawKernel:
    """One kernel instantiation: ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, kernel, library):
        self._kernel = kernel
        self._function = getattr(library, kernel.symbol)
        self._function.restype = ctypes.c_int
        self._library = library
        self.name = kernel.expression

    @property
    def attributes(self) -> dict:
        return {"max_threads_per_block": MAX_THREADS_PER_BLOCK}

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, **kwargs):
        name, params = self.name, self._kernel.params
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        _check_launch(name, grid, block, int(shared_mem))
        args = tuple(args)
        if len(args) != len(params):
            raise TypeError(f"{name} takes {len(params)} arguments "
                            f"({', '.join(p.describe() for p in params)}), got {len(args)}")
        values, arrays, array_index = [None] * len(args), [], {}
        for i, (param, value) in enumerate(zip(params, args, strict=True)):
            if isinstance(value, emu.ndarray):
                if not param.pointer:
                    raise TypeError(f"{name}: argument {i} ({param.describe()}) is passed by "
                                    "value, got an array")
                if value.dtype != param.dtype:
                    raise TypeError(f"{name}: argument {i} ({param.describe()}) needs an array "
                                    f"of {param.dtype}, got {value.dtype}")
                if not value.flags.c_contiguous:
                    raise TypeError(f"{name}: argument {i} ({param.describe()}) is not "
                                    "C-contiguous; the kernel would read it as if it were")
                array_index[len(arrays)] = i
                arrays.append(value._host)
            elif param.pointer:
                raise TypeError(f"{name}: argument {i} ({param.describe()}) needs a device "
                                f"array, got {type(value).__name__}")
            else:
                values[i] = _scalar(param, value, name, i)
        staged = _Staged(arrays)
        for k, i in array_index.items():
            values[i] = ctypes.c_void_p(staged.pointers[k])
        pointers = (ctypes.c_void_p * max(1, len(values)))(
            *[ctypes.addressof(v) for v in values])
        status = self._function((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block),
                                ctypes.c_uint(int(shared_mem)), pointers)
        if status != 0:
            raise LaunchError(f"{name}: {self._library.cudaemu_last_error().decode()}")
        staged.finish(name, params, array_index)


class RawModule:
    """``cupy.RawModule(code=..., options=..., name_expressions=...)`` built with g++."""

    def __init__(self, code: str, options=(), name_expressions=(), name: str = "kernel.cu",
                 **kwargs):
        if not name_expressions:
            raise CompileError("the emulation needs name_expressions (the kernels to build)")
        kernels, self._library = build(code, name_expressions, name)
        self._kernels = {k.expression: k for k in kernels}
        self.options = tuple(options)

    def get_function(self, name: str) -> RawKernel:
        if name not in self._kernels:
            raise KeyError(f"{name!r} is not one of the name expressions "
                           f"{sorted(self._kernels)} this module was built with")
        return RawKernel(self._kernels[name], self._library)


def raw_kernel(code: str, name: str, options=(), **kwargs) -> RawKernel:
    """``cupy.RawKernel(code, name)``: one (non-template) kernel of ``code``."""
    return RawModule(code=code, options=options, name_expressions=[name]).get_function(name)
