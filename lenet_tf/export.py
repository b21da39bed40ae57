"""Exporting a trained checkpoint as a TensorFlow SavedModel for serving.

The ``serving_default`` signature takes ``images``: uint8 ``[N, 28, 28]`` or ``[N, 28, 28, 1]`` raw MNIST-style
digits (white ink on black), and returns ``classes`` (int64 ``[N]``) and ``probabilities`` (float32 ``[N, 10]``).

The graph is always float32, whatever ``--precision`` says: bfloat16 is a session option, not part of a graph, so
each consumer chooses it (``lenet-tf serve --saved-model`` does, from its own ``--precision``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lenet_tf._tf import session_config, tf, tf1
from lenet_tf.errors import CheckpointError
from lenet_tf.model import LeNet5
from lenet_tf.objectives import scale_images
from lenet_tf.trained import TrainedModel

SIGNATURE = tf1.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY


def serving_inputs() -> tuple[tf.Tensor, tf.Tensor]:
    """A uint8 placeholder of raw 28x28 digits (with or without the channel axis) and its padded float form."""
    raw = tf1.placeholder(tf.uint8, None, name="images")  # rank left open: [N,28,28] and [N,28,28,1] both fit
    digits = tf.reshape(raw, [-1, 28, 28, 1])
    padded = tf.pad(digits, [[0, 0], [2, 2], [2, 2], [0, 0]])  # MNIST 28x28 -> LeNet-5's 32x32
    return raw, scale_images(padded)


def export_saved_model(checkpoint_dir: str | os.PathLike, export_dir: str | os.PathLike) -> Path:
    """Writes a SavedModel of the checkpoint's best epoch to ``export_dir`` (replacing it atomically)."""
    export_dir = Path(export_dir)
    config = TrainedModel.read_config(checkpoint_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=export_dir.parent, prefix=".export-"))
    try:
        with tf.Graph().as_default() as graph:
            raw, images = serving_inputs()
            net = LeNet5(**config["model"])
            probabilities = tf.nn.softmax(net(images, training=False), name="probabilities")
            classes = tf.argmax(probabilities, axis=1, name="classes")
            with tf1.Session(graph=graph, config=session_config()) as session:
                net.restore(session, config["checkpoint"], checkpoint_scope=net.name)
                builder = tf1.saved_model.Builder(str(staging / "model"))
                signature = tf1.saved_model.predict_signature_def(
                    inputs={"images": raw}, outputs={"classes": classes, "probabilities": probabilities})
                builder.add_meta_graph_and_variables(
                    session, [tf1.saved_model.tag_constants.SERVING], signature_def_map={SIGNATURE: signature},
                    strip_default_attrs=True)
                builder.save()
        if export_dir.exists():
            shutil.rmtree(export_dir)
        os.replace(staging / "model", export_dir)
    except OSError as err:
        raise CheckpointError(f"{export_dir}: cannot write the SavedModel ({err.strerror or err})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return export_dir
