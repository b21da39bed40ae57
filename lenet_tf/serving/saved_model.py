"""Exporting a trained checkpoint as a TensorFlow SavedModel for serving.

The ``serving_default`` signature takes ``images``: uint8 ``[N, 28, 28]`` or ``[N, 28, 28, 1]`` raw MNIST-style
digits (white ink on black), and returns ``classes`` (int64 ``[N]``) and ``probabilities`` (float32 ``[N, 10]``;
of a ``--ensemble N`` run, its members' probabilities averaged in the graph).
The ``predict_images`` signature takes ``images``: a string vector ``[N]`` of encoded PNG/JPEG/BMP/GIF pictures
(TF Serving's ``{"b64": ...}``), prepared in the graph by :func:`encoded_inputs` the way ``lenet-tf predict``
prepares a file, and returns the same outputs.

The graph is always float32, whatever ``--precision`` says: bfloat16 is a session option, not part of a graph, so
each consumer chooses it (``lenet-tf serve --saved-model`` does, from its own ``--precision``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from lenet_tf.core.tf import session_config, tf, tf1
from lenet_tf.runs import lock
from lenet_tf.runs.checkpoint import describe_tf_error
from lenet_tf.data.mnist import IMAGE_SIZE, MNIST_SIZE
from lenet_tf.core.errors import CheckpointError
from lenet_tf.core.outputs import TMP_PREFIX, describe_os_error, publish, remove_tree, warn
from lenet_tf.inference import ensemble_members, mean_probabilities, restore_members
from lenet_tf.objectives import scale_images
from lenet_tf.trained import TrainedModel

SIGNATURE = tf1.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
IMAGES_SIGNATURE = "predict_images"


def serving_inputs() -> tuple[tf.Tensor, tf.Tensor]:
    """A uint8 placeholder of raw 28x28 digits (with or without the channel axis) and its padded float form."""
    raw = tf1.placeholder(tf.uint8, None, name="images")  # rank left open: [N,28,28] and [N,28,28,1] both fit
    return raw, serving_inputs_of(raw)


def serving_inputs_of(digits: tf.Tensor) -> tf.Tensor:
    """uint8 28x28 digits (any rank that reshapes to [N, 28, 28, 1]) as LeNet-5's padded, scaled float input."""
    digits = tf.reshape(digits, [-1, MNIST_SIZE, MNIST_SIZE, 1])
    border = (IMAGE_SIZE - MNIST_SIZE) // 2
    padded = tf.pad(digits, [[0, 0], [border, border], [border, border], [0, 0]])  # MNIST 28x28 -> LeNet-5's 32x32
    return scale_images(padded)


def _centred_digit(encoded: tf.Tensor) -> tf.Tensor:
    """One encoded picture as a float32 MNIST digit [28, 28] in 0..255: the graph form of
    :func:`lenet_tf.data.images.to_mnist` (polarity and background from the border's median, the ink's bounding
    box scaled to fit 20x20 with Lanczos, placed by its centre of mass). A blank picture gives a blank digit."""
    picture = tf.io.decode_image(encoded, channels=4, expand_animations=False)
    rgb, alpha = tf.cast(picture[..., :3], tf.float32), tf.cast(picture[..., 3:], tf.float32) / 255.0
    rgb = rgb * alpha + 255.0 * (1.0 - alpha)  # transparent areas are white paper
    gray = tf.reduce_sum(rgb * [0.299, 0.587, 0.114], axis=-1)  # PIL's convert("L")

    def border_median(image):
        border = tf.concat([image[0], image[-1], image[:, 0], image[:, -1]], axis=0)
        ordered = tf.sort(border)
        return ordered[tf.size(ordered) // 2]

    ink = tf.cond(border_median(gray) > 127.0, lambda: 255.0 - gray, lambda: gray)
    ink = tf.nn.relu(ink - border_median(ink))
    peak = tf.reduce_max(ink)
    inked = ink > 0.1 * peak
    rows = tf.where(tf.reduce_any(inked, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(inked, axis=0))[:, 0]

    def place():
        crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] * (255.0 / peak)
        height, width = tf.cast(tf.shape(crop)[0], tf.float32), tf.cast(tf.shape(crop)[1], tf.float32)
        scale = 20.0 / tf.maximum(height, width)
        size = tf.cast(tf.maximum(1.0, tf.round([height * scale, width * scale])), tf.int32)
        digit = tf.image.resize(crop[..., None], size, method="lanczos3", antialias=True)[..., 0]
        digit = tf.clip_by_value(digit, 0.0, 255.0)
        total = tf.reduce_sum(digit)
        com_y = tf.reduce_sum(tf.reduce_sum(digit, axis=1) * tf.range(size[0], dtype=tf.float32)) / total
        com_x = tf.reduce_sum(tf.reduce_sum(digit, axis=0) * tf.range(size[1], dtype=tf.float32)) / total
        top = tf.clip_by_value(tf.cast(tf.round(14.0 - com_y), tf.int32), 0, MNIST_SIZE - size[0])
        left = tf.clip_by_value(tf.cast(tf.round(14.0 - com_x), tf.int32), 0, MNIST_SIZE - size[1])
        return tf.pad(digit, [[top, MNIST_SIZE - size[0] - top], [left, MNIST_SIZE - size[1] - left]])

    blank = tf.zeros([MNIST_SIZE, MNIST_SIZE])
    return tf.cond(peak >= 32.0, place, lambda: blank)


def encoded_inputs() -> tuple[tf.Tensor, tf.Tensor]:
    """A string placeholder of encoded pictures ``[N]`` and their prepared uint8 digits ``[N, 28, 28]``."""
    encoded = tf1.placeholder(tf.string, [None], name="encoded_images")
    digits = tf.map_fn(_centred_digit, encoded, fn_output_signature=tf.float32)
    return encoded, tf.cast(tf.round(digits), tf.uint8)


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
    replaced only once the new one is complete and synced to disk, in one exchange
    (:func:`lenet_tf.core.outputs.publish`): a failure or signal at any point leaves the old or the new export at
    ``export_dir``. Nothing else is ever deleted; a leftover that cannot be deleted is a warning line.

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
        warning = remove_tree(staging, "the export's temporary folder") if staging is not None else None
        if warning:
            warn(warning)
    return export_dir


def _build(config: dict, path: Path) -> None:
    """Writes the SavedModel of a training folder's configuration and checkpoint to ``path``."""
    with tf.Graph().as_default() as graph:
        raw, images = serving_inputs()
        encoded, prepared = encoded_inputs()
        nets = ensemble_members(config["model"], config["members"])  # one network, or an ensemble averaged
        signatures = {}
        for name, inputs, scaled, prefix in [(SIGNATURE, raw, images, ""),
                                             (IMAGES_SIGNATURE, encoded, serving_inputs_of(prepared), "encoded_")]:
            probabilities = mean_probabilities(nets, scaled, name=f"{prefix}probabilities")
            classes = tf.argmax(probabilities, axis=1, name=f"{prefix}classes")
            signatures[name] = tf1.saved_model.predict_signature_def(
                inputs={"images": inputs}, outputs={"classes": classes, "probabilities": probabilities})
        with tf1.Session(graph=graph, config=session_config()) as session:
            restore_members(nets, session, config["checkpoint"])
            builder = tf1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, [tf1.saved_model.tag_constants.SERVING], signature_def_map=signatures,
                strip_default_attrs=True)
            builder.save()
    marker = path / MARKER
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps({"checkpoint": config["checkpoint"], "epoch": config["run"]["best"]["epoch"],
                                  "model": config["model"], "ensemble": config["members"]}, indent=2))


def _publish_export(staging: Path, export_dir: Path, replace: bool) -> None:
    """Publishes the finished export ``staging/model`` at ``export_dir``. What was there (an earlier export of
    ours, or an empty folder: checked by :func:`check_export_dir`) is exchanged with it, landing in ``staging``
    to be deleted with it, so no moment leaves neither on disk."""
    for warning in publish(staging / "model", export_dir, replace=replace or export_dir.is_dir()):
        warn(warning)
