"""The PyTorch contender of the throughput benchmark, in a process of its own that never imports TensorFlow.

PyTorch crashes (``torch._dynamo``, imported by ``torch.optim``, segfaults) in a process that imported
TensorFlow, so this module reads MNIST with the TensorFlow-free :mod:`lenet_tf.data.mnist` and speaks the
protocol of :mod:`lenet_tf.benchmark.protocol`. Variants, PyTorch's usual CPU options for a small CNN:

- ``eager``: float32, NCHW;
- ``bf16``: ``torch.autocast("cpu", torch.bfloat16)``;
- ``channels_last``: float32 in the channels-last memory format (oneDNN's preferred layout);
- ``channels_last_bf16``: both.

Usage (by :mod:`lenet_tf.benchmark.throughput`): python -m lenet_tf.benchmark.torch_worker --variant eager ...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

from lenet_tf.benchmark.flags import STEPS, WARMUP
from lenet_tf.benchmark.protocol import batched, cycling_steps, serve
from lenet_tf.data.mnist import load_mnist, split

VARIANTS = ("eager", "bf16", "channels_last", "channels_last_bf16")


def build(variant: str, data_dir: str | None, steps: int, warmup: int, eval_batch: int):
    """The seed article's LeNet-5 with Adam in PyTorch: returns the timed train and inference repeats."""
    import torch
    from torch import nn

    splits = split(load_mnist(data_dir), 5000, 0)
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    bf16, channels_last = variant.endswith("bf16"), variant.startswith("channels_last")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def tensor(images: np.ndarray):
        return torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255).to(memory_format=memory_format)

    train_x, test_x = tensor(splits.train_images), tensor(splits.test_images)
    train_y = torch.from_numpy(splits.train_labels.astype(np.int64))

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step(batch: slice) -> None:
        optimizer.zero_grad()
        with autocast():
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
        loss.backward()
        optimizer.step()

    def predict(batch: slice) -> None:
        with torch.no_grad(), autocast():
            model(test_x[batch])

    run_steps = cycling_steps(len(train_x), step, steps)
    run_steps(warmup)
    predict(slice(0, eval_batch))
    return run_steps, batched(len(test_x), predict, eval_batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, default="eager")
    parser.add_argument("--data-dir")
    parser.add_argument("--steps", type=STEPS.parse, default=100)
    parser.add_argument("--warmup", type=WARMUP.parse, default=30)
    parser.add_argument("--eval-batch", type=int, default=2500)
    args = parser.parse_args(argv)
    return serve(lambda: build(args.variant, args.data_dir, args.steps, args.warmup, args.eval_batch),
                 "pip install lenet_tf[bench]")


if __name__ == "__main__":
    sys.exit(main())
