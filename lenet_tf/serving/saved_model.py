"""Exporting a trained checkpoint as a TensorFlow SavedModel for serving.

The ``serving_default`` signature takes ``images``: uint8 ``[N, 28, 28]`` or ``[N, 28, 28, 1]`` raw MNIST-style
digits (white ink on black), and returns ``classes`` (int64 ``[N]``) and ``probabilities`` (float32 ``[N, 10]``;
of a ``--ensemble N`` run, its members' probabilities averaged in the graph).

The graph is always float32, whatever ``--precision`` says: bfloat16 is a session option, not part of a graph, so
each consumer chooses it (``lenet-tf serve --saved-model`` does, from its own ``--precision``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from lenet_tf.core.tf import session_config, tf, tf1
from lenet_tf.runs import lock
from lenet_tf.runs.checkpoint import describe_tf_error
from lenet_tf.data.mnist import IMAGE_SIZE, MNIST_SIZE
from lenet_tf.core.errors import CheckpointError
from lenet_tf.core.outputs import TMP_PREFIX, describe_os_error
from lenet_tf.inference import ensemble_members, mean_probabilities, restore_members
from lenet_tf.objectives import scale_images
from lenet_tf.trained import TrainedModel

SIGNATURE = tf1.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY


def serving_inputs() -> tuple[tf.Tensor, tf.Tensor]:
    """A uint8 placeholder of raw 28x28 digits (with or without the channel axis) and its padded float form."""
    raw = tf1.placeholder(tf.uint8, None, name="images")  # rank left open: [N,28,28] and [N,28,28,1] both fit
    digits = tf.reshape(raw, [-1, MNIST_SIZE, MNIST_SIZE, 1])
    border = (IMAGE_SIZE - MNIST_SIZE) // 2
    padded = tf.pad(digits, [[0, 0], [border, border], [border, border], [0, 0]])  # MNIST 28x28 -> LeNet-5's 32x32
    return raw, scale_images(padded)


MARKER = "assets.extra/lenet_tf.json"  # written into every export: what was exported, and that it is ours
_EXPORT_ENTRIES = {"saved_model.pb", "variables", "assets", "assets.extra", "fingerprint.pb"}


def is_our_export(folder: Path) -> bool:
    """Whether ``folder`` holds a SavedModel written by :func:`export_saved_model` and nothing else."""
    try:
        entries = {entry.name for entry in folder.iterdir()}
        json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return "saved_model.pb" in entries and entries <= _EXPORT_ENTRIES


def check_export_dir(export_dir: Path, overwrite: bool) -> bool:
    """Raises unless ``export_dir`` may be written: absent, empty, or (with ``overwrite``) an earlier export of
    ours. Returns whether something is there to replace."""
    if not export_dir.exists() and not export_dir.is_symlink():
        return False
    if not export_dir.is_dir() or export_dir.is_symlink():
        raise CheckpointError(f"{export_dir}: exists and is not a folder; choose another --out")
    if not any(export_dir.iterdir()):
        return False
    if not is_our_export(export_dir):
        raise CheckpointError(f"{export_dir}: is not empty and not a lenet_tf export, so it is left alone; "
                              "choose another --out")
    if not overwrite:
        raise CheckpointError(f"{export_dir}: holds an earlier export; pass --overwrite to replace it")
    return True


def export_saved_model(checkpoint_dir: str | os.PathLike, export_dir: str | os.PathLike, *,
                       overwrite: bool = False) -> Path:
    """Writes a SavedModel of the checkpoint's best epoch to ``export_dir``.

    ``export_dir`` must be absent or empty, or, with ``overwrite``, an earlier export of ours, which is then
    replaced only once the new one is complete. Nothing else is ever deleted.

    Raises:
      CheckpointError: the checkpoint is unusable or ``export_dir`` may not be written.
    """
    export_dir = Path(export_dir)
    with lock.reading(checkpoint_dir):  # a first check, before anything is created
        TrainedModel.read_config(checkpoint_dir)
    check_export_dir(export_dir, overwrite)
    staging = None
    try:
        with lock.writing_target(export_dir):  # makes the parent folder
            replace = check_export_dir(export_dir, overwrite)
            staging = Path(tempfile.mkdtemp(dir=export_dir.parent, prefix=TMP_PREFIX))
            with lock.reading(checkpoint_dir):
                config = TrainedModel.read_config(checkpoint_dir)
                _build(config, staging / "model")
            _publish_export(staging, export_dir, replace)
    except OSError as err:
        raise CheckpointError(f"{export_dir}: cannot write the SavedModel ({describe_os_error(err)})") from None
    except tf.errors.OpError as err:
        raise CheckpointError(f"{export_dir}: cannot write the SavedModel ({describe_tf_error(err)})") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return export_dir


def _build(config: dict, path: Path) -> None:
    """Writes the SavedModel of a training folder's configuration and checkpoint to ``path``."""
    with tf.Graph().as_default() as graph:
        raw, images = serving_inputs()
        nets = ensemble_members(config["model"], config["members"])  # one network, or an ensemble averaged
        probabilities = mean_probabilities(nets, images, name="probabilities")
        classes = tf.argmax(probabilities, axis=1, name="classes")
        with tf1.Session(graph=graph, config=session_config()) as session:
            restore_members(nets, session, config["checkpoint"])
            builder = tf1.saved_model.Builder(str(path))
            signature = tf1.saved_model.predict_signature_def(
                inputs={"images": raw}, outputs={"classes": classes, "probabilities": probabilities})
            builder.add_meta_graph_and_variables(
                session, [tf1.saved_model.tag_constants.SERVING], signature_def_map={SIGNATURE: signature},
                strip_default_attrs=True)
            builder.save()
    marker = path / MARKER
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps({"checkpoint": config["checkpoint"], "epoch": config["run"]["best"]["epoch"],
                                  "model": config["model"], "ensemble": config["members"]}, indent=2))


def _publish_export(staging: Path, export_dir: Path, replace: bool) -> None:
    """Moves the finished export from ``staging/model`` to ``export_dir``; an earlier export of ours there is
    moved into ``staging`` first (and deleted with it), so no moment leaves neither on disk."""
    if replace:
        os.rename(export_dir, staging / "previous")
    elif export_dir.is_dir():
        export_dir.rmdir()  # empty: checked by check_export_dir; fails safely if something appeared since
    os.rename(staging / "model", export_dir)
