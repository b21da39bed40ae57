"""Robustness benchmark: accuracy on digits that did not come out of MNIST's own scanner.

Three kinds of rows:

* ``mnist test``: the official test set as stored (no file round trip);
* ``load_digits``: scikit-learn's 1,797 8x8 digits from other writers (values 0..16), drawn as dark ink on
  white paper, upscaled x8 (bilinear) to a 64x64 PNG and read back exactly like a ``predict`` file;
* ``pendigits canvas`` / ``pendigits filled box`` (validation side): UCI pendigits' 30 writers drawn on a
  280x280 canvas with a round brush of 8-28 px (:mod:`lenet_tf.data.pendigits`), taller than wide or stretched to
  fill their box as the data set stores them, as PNG files read back like ``predict``;
* one row per *capture shift*: MNIST digits re-drawn as dark ink on white paper at ``scale`` times their
  size, changed by the shift (thinner or thicker pen, blur, low resolution, rotation, grey noisy paper,
  JPEG, or cropped to the ink and stretched to fill a 16x16 black-and-white box), encoded as a PNG/JPEG file in memory and read back with :func:`lenet_tf.data.images.grayscale` and
  :func:`lenet_tf.data.images.to_mnist`, as ``lenet-tf predict`` reads a file. A file the preprocessing
  rejects (e.g. a digit eroded to nothing) counts as an error;
* one row per *capture condition* (validation side: :data:`lenet_tf.evaluation.conditions.VALID_CONDITIONS`):
  speckle, fog, brighter backgrounds, shadows, lines, outlined strokes, inverted regions… applied to the
  validation digits as raw 28x28 arrays and read by ``model.predict`` as they are, as a Python user passes them.

Two suites use the same generator: :data:`TEST_SUITE` (a fixed subset of the MNIST *test* digits; for
reporting) and :data:`VALID_SUITE` (a model's own 5,000 *validation* digits, other seeds and strengths;
for choosing training options). Everything is seeded and offline.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from lenet_tf.data.other_writers import (LOAD_DIGITS_SCALE, load_digits_files, pendigits_files,  # noqa: F401
                                         png_bytes, read_encoded, read_file_bytes)
from lenet_tf.data.pendigits import FILE as PENDIGITS_FILE, pendigits_dir
from lenet_tf.evaluation.conditions import VALID_CONDITIONS, Condition

KINDS = ("clean", "thin", "thick", "blur", "low_res", "rotate", "paper", "jpeg", "stretch")


@dataclass(frozen=True)
class Shift:
    """One way of re-capturing a digit; ``strength`` is in MNIST pixels unless the kind says otherwise.

    thin/thick: pen radius removed/added (erosion/dilation); blur: Gaussian sigma; low_res: down-sampling
    factor (28 pixels become 28/strength); rotate: degrees, either way at random; paper: noise stddev in grey
    levels on random grey paper with dark ink; jpeg: JPEG quality; stretch: the side in pixels of the box the
    ink is stretched to fill (aspect ratio not kept), then thresholded to black and white; clean: none (the file
    round trip only).
    """

    name: str
    kind: str
    strength: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"shift kind must be one of {KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Suite:
    """Shifts, the render scale and the seed that together make one deterministic benchmark."""

    name: str
    shifts: tuple[Shift, ...]
    scale: int
    seed: int
    count: int  # digits per shift (a fixed random subset); 0 means all
    load_digits: bool  # report scikit-learn's digits
    pendigits: int = 0  # pendigits drawn on a canvas, per row (a seeded subset; 0: no pendigits rows)
    conditions: tuple[Condition, ...] = ()  # capture conditions on raw arrays, on the same subset as the shifts


TEST_SUITE = Suite("test", (
    Shift("clean capture", "clean"),
    Shift("thin pen 0.5", "thin", 0.5),
    Shift("thin pen 0.75", "thin", 0.75),
    Shift("thick pen 0.5", "thick", 0.5),
    Shift("thick pen 1", "thick", 1.0),
    Shift("blur 1", "blur", 1.0),
    Shift("low resolution /2.8", "low_res", 2.8),
    Shift("rotation 10°", "rotate", 10.0),
    Shift("grey noisy paper", "paper", 25.0),
    Shift("jpeg q15", "jpeg", 15),
    Shift("stretched 16x16 b/w", "stretch", 16),
), scale=4, seed=20240, count=1000, load_digits=True)

# Other strengths, another render scale and seed: choosing on these does not tune to the test rows. Real digits
# of other writers to choose on: load_digits (the same digits as the test side's row) and pendigits.
VALID_SUITE = Suite("valid", (
    Shift("clean capture", "clean"),
    Shift("thin pen 0.4", "thin", 0.4),
    Shift("thin pen 0.8", "thin", 0.8),
    Shift("thick pen 0.6", "thick", 0.6),
    Shift("thick pen 1.2", "thick", 1.2),
    Shift("blur 0.8", "blur", 0.8),
    Shift("low resolution /2.4", "low_res", 2.4),
    Shift("rotation 12°", "rotate", 12.0),
    Shift("grey noisy paper", "paper", 20.0),
    Shift("jpeg q20", "jpeg", 20),
    Shift("stretched 16x16 b/w", "stretch", 16),
), scale=5, seed=777, count=1000, load_digits=True, pendigits=2000, conditions=VALID_CONDITIONS)

SUITES = {suite.name: suite for suite in (TEST_SUITE, VALID_SUITE)}


def render(digit: np.ndarray, scale: int) -> Image.Image:
    """A uint8 MNIST digit ``[28, 28]`` (white ink on black) as dark ink on white paper, ``scale`` times larger."""
    paper = Image.fromarray(255 - np.asarray(digit, np.uint8))
    return paper.resize((paper.width * scale, paper.height * scale), Image.BICUBIC)


def apply_shift(paper: Image.Image, shift: Shift, scale: int, rng: np.random.Generator) -> Image.Image:
    """``paper`` (an ``L`` image, dark ink on white) changed by ``shift``; ``scale`` pixels make one MNIST pixel."""
    if shift.kind in ("thin", "thick"):
        size = 2 * round(shift.strength * scale) + 1
        # On white paper the ink is dark: a max filter erodes it, a min filter dilates it.
        morphology = ndimage.maximum_filter if shift.kind == "thin" else ndimage.minimum_filter
        return Image.fromarray(morphology(np.asarray(paper), size=size, mode="nearest"))
    if shift.kind == "blur":
        return paper.filter(ImageFilter.GaussianBlur(shift.strength * scale))
    if shift.kind == "low_res":
        small = max(1, round(paper.width / (shift.strength * scale)))
        return paper.resize((small, small), Image.BOX).resize(paper.size, Image.BILINEAR)
    if shift.kind == "stretch":
        ink = np.asarray(paper) < 128
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        if not len(rows):
            return paper
        box = paper.crop((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
        side = int(shift.strength)
        return box.resize((side, side), Image.BOX).point(lambda v: 255 if v >= 128 else 0)
    if shift.kind == "rotate":
        angle = shift.strength * rng.choice([-1.0, 1.0])
        return paper.rotate(angle, Image.BICUBIC, fillcolor=255)
    if shift.kind == "paper":
        ink = 1.0 - np.asarray(paper, np.float32) / 255.0
        background, dark = rng.uniform(150, 215), rng.uniform(0, 50)
        noise = rng.normal(0, shift.strength, ink.shape)
        return Image.fromarray(np.clip(background + (dark - background) * ink + noise, 0, 255).astype(np.uint8))
    return paper  # clean, jpeg (the encoding is the shift)


def encode(image: Image.Image, shift: Shift) -> bytes:
    """The image as the bytes of a file: JPEG at the shift's quality for ``jpeg``, else PNG."""
    if shift.kind != "jpeg":
        return png_bytes(image)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(shift.strength))
    return buffer.getvalue()


def read_files(papers, shift: Shift) -> tuple[np.ndarray, np.ndarray]:
    """Images (dark ink on white) encoded as ``shift``'s file type and read back like ``predict``: prepared uint8
    ``[N, 28, 28]`` (blank where the preprocessing rejected the file) and the bool ``[N]`` accepted mask."""
    return read_encoded([encode(paper, shift) for paper in papers])


def capture(digits: np.ndarray, shift: Shift, scale: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-captures uint8 digits ``[N, 28, 28]`` under ``shift`` and reads them back like ``predict``.

    Returns:
      uint8 ``[N, 28, 28]`` prepared digits (blank where the preprocessing rejected the file) and a bool
      ``[N]`` mask of the files it accepted. The same ``seed`` gives the same images.
    """
    rng = np.random.default_rng([seed, KINDS.index(shift.kind), int(round(shift.strength * 100))])
    return read_files([apply_shift(render(digit, scale), shift, scale, rng) for digit in digits], shift)


PENDIGITS_ROWS = {"pendigits canvas": False, "pendigits filled box": True}  # row name -> keep the data's box


@dataclass
class Row:
    """Accuracy of one row; ``rejected`` files count as errors."""

    name: str
    kind: str
    strength: float
    count: int
    accuracy: float
    rejected: int = 0


@dataclass
class RobustnessReport:
    """Every row of a suite for one checkpoint, and the mean accuracy over the shifted rows."""

    checkpoint: str
    epoch: int
    suite: str
    rows: list[Row]
    examples: dict = field(default_factory=dict, repr=False)  # row name -> (images, labels, probabilities)

    @property
    def shift_rows(self) -> list[Row]:
        """The rows of capture shifts proper (not MNIST, load_digits, pendigits, or the unshifted capture)."""
        return [r for r in self.rows if r.kind not in ("mnist", "load_digits", "pendigits", "clean", "condition")]

    @property
    def mean_shift_accuracy(self) -> float:
        """Mean accuracy over :attr:`shift_rows`."""
        return float(np.mean([r.accuracy for r in self.shift_rows]))

    @property
    def condition_rows(self) -> list[Row]:
        """The rows of capture conditions on raw arrays (:mod:`lenet_tf.evaluation.conditions`)."""
        return [r for r in self.rows if r.kind == "condition"]

    @property
    def mean_condition_accuracy(self) -> float | None:
        """Mean accuracy over :attr:`condition_rows` (``None`` without them)."""
        return float(np.mean([r.accuracy for r in self.condition_rows])) if self.condition_rows else None

    def row(self, name: str) -> Row:
        """The row called ``name``."""
        return next(r for r in self.rows if r.name == name)

    def to_dict(self) -> dict:
        """JSON-ready: checkpoint, epoch, suite, rows, mean_shift_accuracy."""
        return {"checkpoint": self.checkpoint, "epoch": self.epoch, "suite": self.suite,
                "rows": [asdict(r) for r in self.rows], "mean_shift_accuracy": self.mean_shift_accuracy,
                "mean_condition_accuracy": self.mean_condition_accuracy}

    def format(self) -> str:
        """A plain-text table."""
        lines = [f"checkpoint {self.checkpoint} (epoch {self.epoch}), {self.suite}-side robustness suite",
                 f"{'row':<24} {'images':>7} {'accuracy':>9} {'rejected':>9}"]
        lines += [f"{r.name:<24} {r.count:>7} {r.accuracy:>9.2%} {r.rejected:>9}" for r in self.rows]
        lines.append(f"{'mean over shifts':<24} {'':>7} {self.mean_shift_accuracy:>9.2%}")
        if self.condition_rows:
            lines.append(f"{'mean over conditions':<24} {'':>7} {self.mean_condition_accuracy:>9.2%}")
        return "\n".join(lines)


def _subset(count: int, total: int, seed: int) -> np.ndarray:
    if not count or count >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, count, replace=False))


_CAPTURED: dict[tuple, list] = {}  # the captured files depend on the suite and digits only, not on the model


def captured_rows(suite: Suite, images: np.ndarray, labels: np.ndarray) -> list[tuple]:
    """``(shift, prepared, labels, accepted)`` for load_digits (if the suite has it) and each shift of ``suite``
    on a seeded subset of ``images``; computed once per process for the same suite and digits."""
    key = (suite, hash(np.ascontiguousarray(images).tobytes()), hash(np.asarray(labels).tobytes()))
    if key not in _CAPTURED:
        rows = []
        if suite.load_digits:
            rows.append((Shift("load_digits", "clean"), *load_digits_files()))
        if suite.pendigits and not (pendigits_dir() / PENDIGITS_FILE).is_file():
            warnings.warn(f"no pendigits rows: {pendigits_dir() / PENDIGITS_FILE} is missing "
                          "(set $LENET_TF_PENDIGITS_DIR)", stacklevel=2)
        elif suite.pendigits:
            rows += [(Shift(name, "clean"), *pendigits_files(suite.pendigits, suite.seed, keep_box))
                     for name, keep_box in PENDIGITS_ROWS.items()]
        chosen = _subset(suite.count, len(labels), suite.seed)
        for shift in suite.shifts:
            prepared, accepted = capture(images[chosen], shift, suite.scale, suite.seed)
            rows.append((shift, prepared, np.asarray(labels[chosen], np.int32), accepted))
        rows += [(condition, condition.apply(images[chosen], suite.seed), np.asarray(labels[chosen], np.int32),
                  np.ones(len(chosen), bool)) for condition in suite.conditions]
        if len(_CAPTURED) >= 4:  # a few suites' files at a time (a sweep re-uses them across models)
            _CAPTURED.pop(next(iter(_CAPTURED)))
        _CAPTURED[key] = rows
    return _CAPTURED[key]


def run_suite(model, suite: Suite, images: np.ndarray, labels: np.ndarray,
              mnist_row: str = "mnist test") -> RobustnessReport:
    """Evaluates ``model`` (a :class:`lenet_tf.trained.TrainedModel`) on ``suite``.

    Args:
      model: anything with ``predict(uint8 [N, 28, 28]) -> Predictions`` and ``checkpoint``/``epoch``.
      suite: :data:`TEST_SUITE` with the MNIST test digits, or :data:`VALID_SUITE` with the model's
        validation digits.
      images, labels: uint8 ``[N, 28, 28]`` MNIST digits and their labels (all of them form the first row;
        the shifts use a seeded subset of ``suite.count``).
      mnist_row: name of the first row.
    """
    labels = np.asarray(labels, np.int32)
    report = RobustnessReport(getattr(model, "checkpoint", "?"), getattr(model, "epoch", 0), suite.name, [])
    rows = [(Shift(mnist_row, "clean"), images, labels, np.ones(len(labels), bool)),
            *captured_rows(suite, images, labels)]
    for i, (shift, prepared, truth, accepted) in enumerate(rows):
        kind = ("mnist" if i == 0 else "condition" if isinstance(shift, Condition)
                else "load_digits" if shift.name == "load_digits"
                else "pendigits" if shift.name in PENDIGITS_ROWS else shift.kind)
        probabilities = model.predict(prepared).probabilities
        right = (probabilities.argmax(axis=1) == truth) & accepted
        report.rows.append(Row(shift.name, kind, float(shift.strength), len(truth), float(right.mean()),
                               int((~accepted).sum())))
        report.examples[shift.name] = (prepared, truth, probabilities, accepted)
    return report
