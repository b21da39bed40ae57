"""Draws docs/augmentation.png: MNIST training digits as the trainer's augmentation distorts them.

Run from the repository root: ``python docs/augmentation_figure.py``.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lenet_tf.core.tf import tf, tf1  # noqa: E402
from lenet_tf.data.augment import augment_images  # noqa: E402
from lenet_tf.data.mnist import load_mnist, pad_images  # noqa: E402

ROWS = [("original", {"strength": 0.0}), ("affine (preset)", {}), ("affine + elastic α=12", {"elastic_alpha": 12.0}),
        ("affine + elastic α=34", {"elastic_alpha": 34.0})]


def main(out: Path = Path(__file__).parent / "augmentation.png", count: int = 10) -> None:
    digits = load_mnist().train_images[:count]
    images = pad_images(digits).astype(np.float32) / 255
    with tf.Graph().as_default(), tf1.Session() as session:
        batch = tf.constant(images)
        rows = session.run([augment_images(batch, tf.constant([0, 1]), **kwargs) for _, kwargs in ROWS])
    figure, axes = plt.subplots(len(ROWS), count, figsize=(count, len(ROWS) * 1.1))
    for (title, _), row, row_axes in zip(ROWS, rows, axes):
        for image, ax in zip(row, row_axes):
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        row_axes[0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    print(out)


if __name__ == "__main__":
    main()
