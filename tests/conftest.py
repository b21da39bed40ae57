import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import write_mnist_dir  # noqa: E402

from lenet_tf.data.mnist import load_mnist, split  # noqa: E402

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
def synthetic_model_dir(tmp_path_factory, synthetic_splits) -> Path:
    """A LeNet-5 trained for three epochs on the synthetic digits (read it, don't change it)."""
    from lenet_tf.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("synthetic-model") / "model"
    train(TrainConfig(epochs=3, batch_size=32, learning_rate=3e-3, valid_size=100), out, splits=synthetic_splits,
          progress=False)
    return out


@pytest.fixture(scope="session")
def real_model_dir(tmp_path_factory, real_mnist):
    """A LeNet-5 trained for two epochs on the real MNIST (shared by the tests that need a real model)."""
    from lenet_tf.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("real") / "model"
    result = train(TrainConfig(epochs=2), out, splits=split(real_mnist, 5000, 0), progress=False)
    return out, result


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a small tmpfs: ``tmpfs(size="300k", read_only=False)`` returns its folder (needs root; the test is
    skipped where mounting is not allowed). Unmounted after the test."""
    import subprocess

    mounts = []

    def mount(size: str = "300k", read_only: bool = False) -> Path:
        folder = tmp_path / f"tmpfs{len(mounts)}"
        folder.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


@pytest.fixture(scope="session", autouse=True)
def suite_environment(tmp_path_factory):
    """Decoded MNIST arrays and split indices are cached in a temporary folder, not in ~/.cache; graphs run in
    fp32 unless a test asks for bf16 (the exact comparisons assume fp32; test_precision.py covers bf16)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        patch.setenv("LENET_TF_PRECISION", "fp32")
        yield


@pytest.fixture(scope="session")
def live(synthetic_model_dir):
    """``lenet-tf serve`` of the synthetic model on a free loopback port (a 2 s header deadline), shared by the
    tests that need real sockets (tests/serving/live.py); its stderr lines after start-up are in ``live.log``."""
    from live import start_server

    server = start_server("--checkpoint", str(synthetic_model_dir), "--header-timeout", "2")
    server.header_timeout = 2.0
    yield server
    server.stop()
