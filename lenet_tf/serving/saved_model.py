"""Exporting a trained checkpoint as a TensorFlow SavedModel for serving.

The ``serving_default`` signature takes ``images``: uint8 ``[N, 28, 28]`` or ``[N, 28, 28, 1]`` raw MNIST-style
digits (white ink on black), and returns ``classes`` (int64 ``[N]``; -1 for a digit with no ink, i.e. no digit)
and ``probabilities`` (float32 ``[N, 10]``; of a ``--ensemble N`` run, its members' probabilities averaged in the
graph). The ``predict_images`` signature takes ``images``: a string vector ``[N]`` of encoded PNG, JPEG, GIF, BMP
or WebP pictures (TF Serving's ``{"b64": ...}``; TIFF is not among TensorFlow's decoders), prepared in the graph by
:func:`encoded_inputs` the way ``lenet-tf predict`` prepares a file (a blank picture: class -1), and returns the
same outputs. A calibrated run's export (:mod:`lenet_tf.rejection`) also returns ``novelty`` (float32 ``[N]``)
and ``digits`` (int64 ``[N]``: ``classes``, or -1 where the novelty is above the threshold: "not a digit"), and
records the threshold in :data:`MARKER`. All run in plain TensorFlow (``tf.saved_model.load``,
``saved_model_cli``, TF Serving).

The graph is always float32, whatever ``--precision`` says: bfloat16 is a session option, not part of a graph, so
each consumer chooses it (``lenet-tf serve --saved-model`` does, from its own ``--precision``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path

from lenet_tf.core.tf import session_config, tf, tf1
from lenet_tf.runs import lock
from lenet_tf.runs.checkpoint import describe_tf_error
from lenet_tf.data.images import INK_FRACTION, PAPER_NOISE, BLANK_LEVEL, WORKING_SIDE
from lenet_tf.data.mnist import IMAGE_SIZE, MNIST_SIZE
from lenet_tf.serving.tf_serving import NO_DIGIT
from lenet_tf.core.errors import CheckpointError, OutputError
from lenet_tf.core.outputs import TMP_PREFIX, check_writable_folder, describe_os_error, publish, remove_tree, warn
from lenet_tf.core.regular_files import read_regular, special_kind
from lenet_tf.core import json_text
from lenet_tf.inference import ensemble_members, mean_probabilities, restore_members
from lenet_tf.objectives import scale_images
from lenet_tf.rejection import RejectionStats, feature_tensor, novelty_tensor, usable_head
from lenet_tf.trained import TrainedModel

SIGNATURE = tf1.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
IMAGES_SIGNATURE = "predict_images"
ANIMATED_WEBP = "an animated WebP is not read by this signature: send one frame (PNG, JPEG or a still WebP)"


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


def _median(values: tf.Tensor) -> tf.Tensor:
    """The (upper) median of a float32 vector, as ``np.median`` of an odd count gives it."""
    ordered = tf.sort(values)
    return ordered[tf.size(ordered) // 2]


def _border(image: tf.Tensor) -> tf.Tensor:
    return tf.concat([image[0], image[-1], image[:, 0], image[:, -1]], axis=0)


def _starts_with(encoded: tf.Tensor, offset: int, magic: bytes) -> tf.Tensor:
    head = tf.strings.substr(tf.strings.join([encoded, b"\0" * 16]), offset, len(magic))  # padded: never too short
    return tf.equal(head, magic)


def _decoded_rgba(encoded: tf.Tensor) -> tf.Tensor:
    """One encoded PNG, JPEG, GIF (its first frame), BMP or WebP picture as float32 RGBA ``[H, W, 4]`` in 0..255.

    PNG and BMP are decoded in their own channels (grey, grey+alpha, RGB, RGBA: ``decode_image(channels=4)`` fills
    a 1-, 2- or 4-bit grey PNG's alpha with 1, 3 or 15, not 255), WebP by ``decode_webp``, JPEG and GIF as opaque
    RGB. An animated WebP is refused (InvalidArgument): TensorFlow's WebP decoder corrupts memory on it. Pictures
    larger than WORKING_SIDE are area-reduced to about that side, as the PIL path reduces them.
    """
    webp = _starts_with(encoded, 0, b"RIFF") & _starts_with(encoded, 8, b"WEBP")
    with_alpha = _starts_with(encoded, 0, b"\x89PNG\r\n\x1a\n") | _starts_with(encoded, 0, b"BM")

    def rgba(picture: tf.Tensor) -> tf.Tensor:  # uint8 [H, W, 1..4] -> [H, W, 4]
        channels = tf.shape(picture)[-1]
        rgb = tf.cond(channels < 3, lambda: tf.tile(picture[..., :1], [1, 1, 3]), lambda: picture[..., :3])
        opaque = tf.fill(tf.concat([tf.shape(picture)[:2], [1]], 0), tf.constant(255, tf.uint8))
        alpha = tf.cond(tf.equal(channels % 2, 0), lambda: picture[..., -1:], lambda: opaque)
        return tf.concat([rgb, alpha], -1)

    def still_webp() -> tf.Tensor:
        flags = tf.io.decode_raw(tf.strings.substr(tf.strings.join([encoded, b"\0" * 21]), 20, 1), tf.uint8)[0]
        animated = _starts_with(encoded, 12, b"VP8X") & (tf.bitwise.bitwise_and(flags, 2) > 0)  # VP8X's flag
        refuse = tf.debugging.Assert(tf.logical_not(animated), [ANIMATED_WEBP])
        with tf.control_dependencies([refuse]):
            return rgba(tf.io.decode_webp(encoded, channels=0)[0])  # 3 or 4 channels

    picture = tf.case([(webp, still_webp),
                       (with_alpha, lambda: rgba(tf.io.decode_image(encoded, channels=0, expand_animations=False)))],
                      default=lambda: rgba(tf.io.decode_image(encoded, channels=3, expand_animations=False)))
    picture = tf.cast(tf.ensure_shape(picture, [None, None, 4]), tf.float32)
    size = tf.shape(picture)[:2]
    factor = (tf.reduce_max(size) + WORKING_SIDE - 1) // WORKING_SIDE
    return tf.cond(factor > 1, lambda: tf.image.resize(picture, tf.maximum(size // factor, 1), method="area"),
                   lambda: picture)  # a 10000x1 strip keeps its one pixel of width


def _grey(rgba: tf.Tensor) -> tf.Tensor:
    """Grey levels ``[H, W]`` of float32 RGBA ``[H, W, 4]``: the graph form of
    :func:`lenet_tf.data.images._alpha_composited` (the alpha is the ink where it is the digit's mask, else
    transparent areas take the paper's grey)."""
    alpha = rgba[..., 3]
    gray = tf.reduce_sum(rgba[..., :3] * [0.299, 0.587, 0.114], axis=-1)  # PIL's convert("L")

    def composited():
        opaque = alpha >= 128.0
        mask_is_ink = (_median(_border(alpha)) < 128.0) & (tf.reduce_mean(tf.cast(opaque, tf.float32)) < 0.5)
        paper = tf.cond(tf.reduce_any(opaque), lambda: _median(tf.boolean_mask(gray, opaque)),
                        lambda: tf.constant(255.0))
        mixed = (gray * alpha + paper * (255.0 - alpha)) / 255.0
        shows_nothing = tf.reduce_max(tf.abs(mixed - paper)) < 32.0
        return tf.where(mask_is_ink | shows_nothing, 255.0 - alpha, mixed)

    return tf.cond(tf.reduce_min(alpha) >= 255.0, lambda: gray, composited)


def _ink(gray: tf.Tensor) -> tf.Tensor:
    """The graph form of :func:`lenet_tf.data.images.paper_removed`: the paper's level (the border's median) and
    PAPER_NOISE times its noise subtracted, on the side of it where the picture reaches farther."""
    border = _border(gray)
    paper = _median(border)
    ordered = tf.sort(tf.reshape(gray, [-1]))
    last = tf.cast(tf.size(ordered) - 1, tf.float32)
    darkest = ordered[tf.cast(tf.round(0.01 * last), tf.int32)]
    lightest = ordered[tf.cast(tf.round(0.99 * last), tf.int32)]
    ink = tf.cond(paper - darkest >= lightest - paper, lambda: paper - gray, lambda: gray - paper)
    noise = 1.4826 * _median(tf.abs(border - paper))
    return tf.nn.relu(ink - PAPER_NOISE * noise)


def _ink_mask(ink: tf.Tensor, peak: tf.Tensor) -> tf.Tensor:
    """:func:`lenet_tf.data.images.ink_box`'s mask: ink over INK_FRACTION of the peak, isolated pixels left out
    unless nothing else is there."""
    mask = ink > INK_FRACTION * peak
    neighbours = tf.nn.conv2d(tf.cast(mask, tf.float32)[None, ..., None], tf.ones([3, 3, 1, 1]), 1, "SAME")[0, ..., 0]
    kept = mask & (neighbours >= 2.0)
    return tf.cond(tf.reduce_any(kept), lambda: kept, lambda: mask)


def _centred_digit(encoded: tf.Tensor) -> tf.Tensor:
    """One encoded picture as a float32 MNIST digit [28, 28] in 0..255: the graph form of
    :func:`lenet_tf.data.images.to_mnist` after :func:`~lenet_tf.data.images.read_picture` (alpha, paper level and
    noise, the ink's bounding box scaled to fit 20x20 with Lanczos, placed by its centre of mass). A blank picture
    gives an all-zero digit, which the signature's ``classes`` reports as -1."""
    ink = _ink(_grey(_decoded_rgba(encoded)))
    peak = tf.reduce_max(ink)
    inked = _ink_mask(ink, peak)
    rows = tf.where(tf.reduce_any(inked, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(inked, axis=0))[:, 0]

    def place():
        crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        crop = crop * (255.0 / tf.reduce_max(crop))
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
    return tf.cond(peak >= float(BLANK_LEVEL), place, lambda: blank)


def digit_classes(probabilities: tf.Tensor, digits: tf.Tensor, name: str) -> tf.Tensor:
    """int64 ``[N]``: the most probable class of each digit, or -1 (:data:`lenet_tf.serving.tf_serving.NO_DIGIT`)
    where the uint8 digit ``[N, ...]`` holds no ink (:func:`lenet_tf.data.images.blank_digits`' rule)."""
    peaks = tf.reduce_max(tf.reshape(digits, [tf.shape(digits)[0], -1]), axis=1)
    return tf.where(peaks < BLANK_LEVEL, tf.constant(NO_DIGIT, tf.int64), tf.argmax(probabilities, axis=1),
                    name=name)


def encoded_inputs() -> tuple[tf.Tensor, tf.Tensor]:
    """A string placeholder of encoded pictures ``[N]`` and their prepared uint8 digits ``[N, 28, 28]``."""
    encoded = tf1.placeholder(tf.string, [None], name="encoded_images")
    digits = tf.map_fn(_centred_digit, encoded, fn_output_signature=tf.float32)
    return encoded, tf.cast(tf.round(digits), tf.uint8)


MARKER = "assets.extra/lenet_tf.json"  # written into every export: what was exported, its files, that it is ours
_EXPORT_FOLDERS = {"variables", "assets", "assets.extra"}  # a SavedModel's folders
# What an export wrote before its MARKER listed its files (and their digests):
_OLDER_EXPORT_FILES = ("saved_model.pb", "fingerprint.pb", "variables/variables.index",
                       "variables/variables.data-?????-of-?????")


def export_record(config: dict, head: RejectionStats | None) -> dict:
    """What an export records of the run it was made from (in :data:`MARKER`; in a ``.tflite`` file's metadata):
    the checkpoint, its epoch, the model, the ensemble and the "not a digit" threshold (``None`` without a head)."""
    return {"checkpoint": config["checkpoint"], "epoch": config["run"]["best"]["epoch"], "model": config["model"],
            "ensemble": config["members"], "threshold": head.threshold if head else None}


def exported_threshold(folder: Path) -> float | None:
    """The "not a digit" threshold an export of a calibrated run recorded in its :data:`MARKER`, else ``None``
    (no head, an older export, or an unreadable or non-finite value)."""
    try:
        threshold = json_text.loads((folder / MARKER).read_text()).get("threshold")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        return None
    return float(threshold)


def _digest(path: Path) -> str:
    return hashlib.sha256(read_regular(path)).hexdigest()


def _file_digests(folder: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder`` by its relative path, as :data:`MARKER` records them."""
    return {path.relative_to(folder).as_posix(): _digest(path) for path in sorted(folder.rglob("*"))
            if path.is_file()}


def foreign_entry(folder: Path) -> str | None:
    """What under ``folder`` an export of ours did not write, and why ("variables/README: not written by the
    export"); ``None`` when the folder holds an export of ours (its :data:`MARKER`, and files its marker lists,
    unchanged) and nothing else. An older export, whose marker lists no files, may hold :data:`_OLDER_EXPORT_FILES`.
    """
    try:
        files = json_text.loads(read_regular(folder / MARKER)).get("files")
    except (OSError, ValueError, AttributeError):
        return f"{MARKER}: missing or unreadable"
    if files is not None and not isinstance(files, dict):
        return f"{MARKER}: unreadable file list"
    for root, folders, names in os.walk(folder):
        for name in sorted(folders) + sorted(names):
            path = Path(root, name)
            relative = path.relative_to(folder).as_posix()
            kind = special_kind(path)
            if kind:
                why = kind
            elif path.is_dir():
                why = "" if relative in _EXPORT_FOLDERS else _NOT_WRITTEN
            else:
                why = "" if relative == MARKER else _file_not_ours(path, relative, files)
            if why:
                return f"{relative}: {why}"
    return None


_NOT_WRITTEN = "not written by the export"


def _file_not_ours(path: Path, relative: str, files: dict | None) -> str:
    """Why the file ``path`` is not one of an export's ``files`` (relative path: sha256; ``None``: an older
    export's), or ``""``."""
    if files is None:
        return "" if any(fnmatch.fnmatchcase(relative, pattern) for pattern in _OLDER_EXPORT_FILES) else _NOT_WRITTEN
    if relative not in files:
        return _NOT_WRITTEN
    try:
        return "" if files[relative] == _digest(path) else "changed since the export"
    except OSError as err:
        return f"unreadable ({describe_os_error(err)})"


def is_our_export(folder: Path) -> bool:
    """Whether ``folder`` holds a SavedModel written by :func:`export_saved_model` and nothing else."""
    return (folder / "saved_model.pb").is_file() and foreign_entry(folder) is None


def check_export_dir(export_dir: Path, overwrite: bool) -> bool:
    """Raises unless ``export_dir`` may be written: absent, or a folder we may write that is empty or (with
    ``overwrite``) holds an earlier export of ours and nothing else. Returns whether something is there to
    replace."""
    if not export_dir.exists() and not export_dir.is_symlink():
        return False
    if not export_dir.is_dir() or export_dir.is_symlink():
        raise CheckpointError(f"{export_dir}: exists and is not a folder; choose another --out")
    replace = any(export_dir.iterdir())
    if replace:
        if not (export_dir / "saved_model.pb").is_file() or not (export_dir / MARKER).is_file():
            raise CheckpointError(f"{export_dir}: is not empty and not a lenet_tf export, so it is left alone; "
                                  "choose another --out")
        foreign = foreign_entry(export_dir)
        if foreign:
            raise CheckpointError(f"{export_dir}: not a lenet_tf export as written ({foreign}), so it is left "
                                  "alone; choose another --out")
        if not overwrite:
            raise CheckpointError(f"{export_dir}: holds an earlier export; pass --overwrite to replace it")
    try:  # the export takes the folder's mode: one that may not be written is not written
        check_writable_folder(export_dir)
    except OutputError as err:
        raise CheckpointError(str(err)) from None
    return replace


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


def rejection_outputs(features: tf.Tensor, classes: tf.Tensor, head: RejectionStats, prefix: str = ""
                      ) -> dict[str, tf.Tensor]:
    """``novelty`` (float32 ``[N]``) of features ``[N, D]`` and ``digits`` (int64 ``[N]``: ``classes``, or -1
    where the novelty is above the head's threshold), as a signature's outputs."""
    novelty = tf.identity(novelty_tensor(features, head), name=f"{prefix}novelty")
    digits = tf.where(novelty > head.threshold, tf.constant(NO_DIGIT, tf.int64), classes, name=f"{prefix}digits")
    return {"novelty": novelty, "digits": digits}


def _build(config: dict, path: Path) -> None:
    """Writes the SavedModel of a training folder's configuration and checkpoint to ``path``."""
    head = usable_head(config["checkpoint"], config["run"])
    with tf.Graph().as_default() as graph:
        raw, _ = serving_inputs()
        encoded, prepared = encoded_inputs()
        nets = ensemble_members(config["model"], config["members"])  # one network, or an ensemble averaged
        signatures = {}
        for name, inputs, digits, prefix in [(SIGNATURE, raw, raw, ""), (IMAGES_SIGNATURE, encoded, prepared,
                                                                          "encoded_")]:
            probabilities = mean_probabilities(nets, serving_inputs_of(digits), name=f"{prefix}probabilities")
            classes = digit_classes(probabilities, digits, f"{prefix}classes")
            outputs = {"classes": classes, "probabilities": probabilities}
            if head:  # member 0's features of these inputs, as TrainedModel reads them
                outputs.update(rejection_outputs(feature_tensor(nets[0].endpoints), classes, head, prefix))
            signatures[name] = tf1.saved_model.predict_signature_def(inputs={"images": inputs}, outputs=outputs)
        with tf1.Session(graph=graph, config=session_config()) as session:
            restore_members(nets, session, config["checkpoint"])
            builder = tf1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, [tf1.saved_model.tag_constants.SERVING], signature_def_map=signatures,
                strip_default_attrs=True)
            builder.save()
    record = {**export_record(config, head), "files": _file_digests(path)}
    marker = path / MARKER
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps(record, indent=2))


def _publish_export(staging: Path, export_dir: Path, replace: bool) -> None:
    """Publishes the finished export ``staging/model`` at ``export_dir``. What was there (an earlier export of
    ours, or an empty folder: checked by :func:`check_export_dir`) is exchanged with it, landing in ``staging``
    to be deleted with it, so no moment leaves neither on disk; the new folder keeps its mode, owner and group
    (:func:`_keep_attributes`)."""
    if export_dir.is_dir():
        _keep_attributes(export_dir, staging / "model")
    for warning in publish(staging / "model", export_dir, replace=replace or export_dir.is_dir()):
        warn(warning)


def _keep_attributes(existing: Path, staged: Path) -> None:
    """Gives the folder ``staged`` the mode (setgid and sticky bits too) of the folder ``existing`` it is to
    replace, and its owner and group where permitted (else its group alone, else neither), as if the export had
    been written into it: under a setgid folder the files and folders take its group, the folders its setgid."""
    info = os.lstat(existing)
    for owner in (info.st_uid, -1):
        with contextlib.suppress(PermissionError):
            os.chown(staged, owner, info.st_gid)
            break
    os.chmod(staged, stat.S_IMODE(info.st_mode))
    if info.st_mode & stat.S_ISGID:
        for path in staged.rglob("*"):
            with contextlib.suppress(PermissionError):
                os.chown(path, -1, info.st_gid, follow_symlinks=False)
            if path.is_dir():
                os.chmod(path, stat.S_IMODE(path.stat().st_mode) | stat.S_ISGID)
