"""A from-scratch NumPy LeNet-5 forward pass (the seed article's loops, vectorised): the tests' oracle."""

import numpy as np


def conv2d_valid(images: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[N, H, W, C] * [k, k, C, K] -> [N, H-k+1, W-k+1, K], stride 1, no padding (cross-correlation)."""
    k = weights.shape[0]
    n, h, w, _ = images.shape
    out = np.zeros((n, h - k + 1, w - k + 1, weights.shape[3]), np.float64)
    for i in range(k):
        for j in range(k):
            out += np.einsum("nhwc,ck->nhwk", images[:, i:i + h - k + 1, j:j + w - k + 1, :], weights[i, j])
    return out


def max_pool_2x2(images: np.ndarray) -> np.ndarray:
    """[N, H, W, C] -> [N, H/2, W/2, C], the maximum of each 2x2 window."""
    n, h, w, c = images.shape
    return images.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def lenet5_forward(images: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """The textbook order: conv -> +bias -> ReLU -> pool, twice; then three dense layers."""
    h = max_pool_2x2(relu(conv2d_valid(images, params["conv1/weights"]) + params["conv1/biases"]))
    h = max_pool_2x2(relu(conv2d_valid(h, params["conv2/weights"]) + params["conv2/biases"]))
    h = h.reshape(len(h), -1)
    h = relu(h @ params["fc1/weights"] + params["fc1/biases"])
    h = relu(h @ params["fc2/weights"] + params["fc2/biases"])
    return h @ params["logits/weights"] + params["logits/biases"]
