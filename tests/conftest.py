import fcntl
import os
import pickle
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import write_mnist_dir  # noqa: E402

from lenet_tf.data.mnist import load_mnist, split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_MNIST = REPO / "data" / "mnist"

# The commands the tests start stand for commands typed at a terminal, where Ctrl-C reaches them. A suite started in
# the background of a non-interactive shell inherits SIGINT ignored, Python keeps an inherited SIG_IGN, and so would
# every command the tests start (a test that sends them SIGINT would wait in vain): the default comes back here, in
# each process that starts commands (the main one and every pytest-xdist worker).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_setup(item):
    """Tests marked ``native`` need lenet_tf's native ops: where they cannot be built here (no C++ compiler, no
    TensorFlow headers, ``LENET_TF_NATIVE=0``) the test is skipped with the reason ``native_ops`` gives."""
    if item.get_closest_marker("native"):
        from lenet_tf.core import native_ops

        reason = native_ops.unavailable_reason()
        if reason is not None:
            pytest.skip(f"the native ops are not available here: {reason}")


# How the trained fixtures compute, fixed: left to itself training picks its kernels by timing them on this machine
# (native or TensorFlow's) and its precision from the CPU, and either changes the trained weights in their last
# bits, so accuracies that tests compare to thresholds would depend on the machine's load.
def deterministic() -> dict:
    """The TrainConfig fields that fix how training computes (a new dict each time: ``model`` is mutable)."""
    return {"precision": "fp32", "towers": 2, "model": {"kernels": "nn"}}


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


def suite_root(tmp_path_factory) -> Path:
    """The temporary folder of this run of the suite: pytest-xdist's workers (``-n``, pytest.ini) each have their
    own base folder inside it; a run without workers has only its base folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory, name: str, build):
    """``build(folder)``'s (picklable) value, for every worker of the suite: the first worker to ask builds into
    ``<suite root>/<name>`` holding a lock; the others wait for it, then read the same folder and value."""
    root = suite_root(tmp_path_factory)
    folder, value = root / name, root / f"{name}.pickle"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not value.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker whose build failed
            folder.mkdir()
            value.write_bytes(pickle.dumps(build(folder)))
        return pickle.loads(value.read_bytes())


@pytest.fixture(scope="session")
def synthetic_model_dir(tmp_path_factory, synthetic_splits) -> Path:
    """A LeNet-5 trained for three epochs on the synthetic digits (read it, don't change it)."""
    from lenet_tf.training.trainer import TrainConfig, train

    def build(folder: Path) -> Path:
        train(TrainConfig(epochs=3, batch_size=32, learning_rate=3e-3, valid_size=100, **deterministic()),
              folder / "model", splits=synthetic_splits, progress=False)
        return folder / "model"

    return built_once(tmp_path_factory, "synthetic-model", build)


@pytest.fixture(scope="session")
def real_model_dir(tmp_path_factory, real_mnist):
    """A LeNet-5 trained for two epochs on the real MNIST (shared by the tests that need a real model): its folder
    and the :class:`TrainResult` (read it, don't change it)."""
    from lenet_tf.training.trainer import TrainConfig, train

    def build(folder: Path):
        result = train(TrainConfig(epochs=2, **deterministic()), folder / "model", splits=split(real_mnist, 5000, 0),
                       progress=False)
        return folder / "model", result

    return built_once(tmp_path_factory, "real-model", build)


@pytest.fixture(scope="session")
def calibration(tmp_path_factory, real_model_dir):
    """``lenet-tf calibrate`` (the library call) on a copy of the 2-epoch real model: its folder, with
    rejection.npz written beside run.json, and the :class:`Calibration` it reported."""
    from lenet_tf.rejection.calibration import calibrate

    def build(folder: Path):
        shutil.copytree(real_model_dir[0], folder / "model")
        return folder / "model", calibrate(folder / "model", REAL_MNIST)

    return built_once(tmp_path_factory, "calibrated-model", build)


@pytest.fixture(scope="session")
def calibrated_model_dir(calibration) -> Path:
    """The calibrated copy of the 2-epoch real model (read it, don't change it)."""
    return calibration[0]


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


def installed_script(name: str) -> str | None:
    """The command ``name`` that pip installed beside this Python (its ``bin`` folder need not be on PATH, as in a
    venv that was not activated), else the one on PATH, else ``None``."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def console_script() -> str:
    """The ``lenet-tf`` script pip installed beside this Python."""
    script = installed_script("lenet-tf")
    assert script, "the lenet-tf console script is not installed: pip install -e . (setup.py's entry_points)"
    return script


@dataclass
class CliRun:
    """What ``lenet-tf ARGS`` did, shaped like ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capfd):
    """Runs ``lenet-tf ARGS`` in this process: ``cli("train", ...)`` returns a :class:`CliRun` of its exit status
    and what it wrote on stdout/stderr (file descriptors 1 and 2: TensorFlow's C++ log lines too). For tests about
    a command's behaviour, not about a fresh process (those keep ``subprocess``: restoring in a fresh process,
    signals, the console script, servers). The environment and the SIGTERM handler a command changes are put back
    afterwards."""
    from lenet_tf.cli import main

    environment, handler = dict(os.environ), signal.getsignal(signal.SIGTERM)

    def run(*args) -> CliRun:
        capfd.readouterr()
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit:  # argparse: --help (0) and bad flags (2)
            status = exit.code
        out, err = capfd.readouterr()
        return CliRun(status, out, err)

    yield run
    signal.signal(signal.SIGTERM, handler)
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture(scope="session", autouse=True)
def suite_environment(tmp_path_factory, request):
    """Decoded MNIST arrays, split indices, the synthetic pool and the native ops are cached in a temporary folder
    that the suite's workers share (their cache writes are atomic), not in ~/.cache; graphs run in fp32 unless a
    test asks for bf16 (the exact comparisons assume fp32; test_precision.py covers bf16)."""
    cache = suite_root(tmp_path_factory) / "xdg-cache"
    cache.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        patch.setenv("LENET_TF_PRECISION", "fp32")
        if len(request.session.items) > 100:  # the suite, not a few tests: those make what they need
            warm_caches(tmp_path_factory)
        yield


def warm_caches(tmp_path_factory) -> None:
    """Fills the suite's cache with the two sets of pictures many commands make (25-32 s each on an AVX2-only
    EPYC): the synthetic digits of every default training and the calibration's pictures of every calibrated one,
    each once, before the commands the tests start could make them side by side. Two workers make one set each, at
    the same time."""
    from lenet_tf.data.synthetic import SYNTHETIC_POOL, synthetic_digits
    from lenet_tf.rejection.calibration import run_independent_inputs

    sets = [("synthetic-pool", lambda: synthetic_digits(SYNTHETIC_POOL, seed=0)),
            ("calibration-pictures", run_independent_inputs)]
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        sets.reverse()
    for name, make in sets:  # the value is in the cache; built_once only orders the workers
        built_once(tmp_path_factory, name, lambda folder, make=make: make() and None)


@pytest.fixture(scope="session")
def live(synthetic_model_dir):
    """``lenet-tf serve`` of the synthetic model on a free loopback port (a 2 s header deadline), shared by the
    tests that need real sockets (tests/serving/live.py); its stderr lines after start-up are in ``live.log``."""
    from live import start_server

    server = start_server("--checkpoint", str(synthetic_model_dir), "--header-timeout", "2")
    server.header_timeout = 2.0
    yield server
    server.stop()
