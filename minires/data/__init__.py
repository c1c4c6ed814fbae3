"""Datasets, batching and augmentation.

* :func:`load_mnist` - 5,000 real MNIST digits shipped inside minires (works offline).
* :func:`load_cifar10` - CIFAR-10 from the official binary or python files (md5-checked, never
  unpickled; or ``download=True``).
* :func:`make_blobs_images` - a tiny synthetic image dataset for tests and demos.
* :class:`DataLoader`, :class:`ArrayDataset` - shuffled, resumable mini-batches.
* :class:`Normalize`, :class:`RandomCrop`, :class:`RandomHorizontalFlip`, :class:`Compose`
  - whole-batch transforms, ``t(x, rng) -> x``; :func:`downsample` averages pixel blocks.
"""

from minires.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10_URL,
    check_cifar10,
    cifar10_dir,
    download_cifar10,
    load_cifar10,
)
from minires.data.loader import ArrayDataset, DataLoader
from minires.data.mnist import MNIST_CLASSES, MNIST_MEAN, MNIST_SHA256, MNIST_STD, load_mnist
from minires.data.synthetic import make_blobs_images
from minires.data.transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    downsample,
)

__all__ = [
    "ArrayDataset",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_URL",
    "Compose",
    "DataLoader",
    "MNIST_CLASSES",
    "MNIST_MEAN",
    "MNIST_SHA256",
    "MNIST_STD",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "check_cifar10",
    "cifar10_dir",
    "download_cifar10",
    "downsample",
    "load_cifar10",
    "load_mnist",
    "make_blobs_images",
]
