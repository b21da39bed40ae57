import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

from synthetic import write_mnist_dir  # noqa: E402

from lenet_tf.data import load_mnist, split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_MNIST = REPO / "data" / "mnist"


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A folder of small synthetic MNIST-format files (checksums do not match the official ones)."""
    return write_mnist_dir(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="session")
def synthetic_splits(synthetic_dir):
    return split(load_mnist(synthetic_dir, verify=False, download=False), valid_size=100, seed=0)


@pytest.fixture(scope="session")
def real_mnist():
    if not (REAL_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("the shipped MNIST files are not in data/mnist")
    return load_mnist(REAL_MNIST, download=False)


@pytest.fixture(scope="session")
def real_model_dir(tmp_path_factory, real_mnist):
    """A LeNet-5 trained for two epochs on the real MNIST (shared by the tests that need a real model)."""
    from lenet_tf.train import TrainConfig, train

    out = tmp_path_factory.mktemp("real") / "model"
    result = train(TrainConfig(epochs=2), out, splits=split(real_mnist, 5000, 0), progress=False)
    return out, result


@pytest.fixture(scope="session", autouse=True)
def suite_environment(tmp_path_factory):
    """Decoded MNIST arrays and split indices are cached in a temporary folder, not in ~/.cache; graphs run in
    fp32 unless a test asks for bf16 (the exact comparisons assume fp32; test_precision.py covers bf16)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        patch.setenv("LENET_TF_PRECISION", "fp32")
        yield
