"""Small learnable stand-ins for MNIST that the tests write as IDX files themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenet_tf.data.idx import write_idx


def make_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [count, 28, 28] of ten noisy class templates (fixed per class), and their labels."""
    templates = np.random.default_rng(1234).random((10, 7, 7)) > 0.6
    templates = np.kron(templates, np.ones((4, 4))) * 220  # 28x28 blocky "digits"
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    noise = rng.normal(0, 30, (count, 28, 28))
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def write_mnist_dir(folder: Path, train: int = 600, test: int = 200, seed: int = 0) -> Path:
    """Writes the four MNIST-named IDX .gz files of synthetic digits into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = make_digits(train, seed)
    test_x, test_y = make_digits(test, seed + 1)
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)
    return folder
