"""Every training option, declared once: name, type, default, range, help text, and whether a cluster trains it.

Importable without TensorFlow. The command line's flags and their ``--help`` (with the default of the chosen
preset), :meth:`TrainConfig.validate`, the presets' checks, ``run.json``'s ``train`` record and the cluster's
refusals are all derived from the fields below (:func:`options`), so none of them can disagree with what runs.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from lenet_tf.core.errors import ConfigError
from lenet_tf.core.options import ACTIVATIONS, DROPOUT, ENSEMBLE, INIT_STDDEV, KERNEL_NAMES, SCHEDULES, Range
from lenet_tf.core.precision import PRECISIONS


@dataclass(frozen=True)
class Option:
    """How one setting is offered: its flag, range or choices, help, and the cluster's support."""

    name: str
    kind: type
    default: Any
    help: str
    range: Range | None = None
    choices: tuple | None = None
    flag: str | None = None  # defaults to --NAME-WITH-DASHES
    metavar: str | None = None
    group: str = "training"
    cluster: str | None = None  # None: a cluster trains it; else why TensorFlow's distributed runtime cannot
    model: bool = False  # a LeNet5 argument (TrainConfig.model), not a TrainConfig field

    @property
    def flag_name(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value) -> None:
        """Raises ConfigError "NAME must be …, got VALUE" unless ``value`` is allowed."""
        label = self.name.replace("_", " ")
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(f"{label} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        elif self.range is not None:
            if value is None and self.default is None:
                return
            try:
                self.range.check(label, value)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        elif self.kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{label} must be true or false, got {value!r}")


def option(default, help: str, **details) -> Any:
    """A dataclass field whose metadata is its :class:`Option` (the name and type come from the field)."""
    return field(default=default, metadata={"option": details | {"help": help}})


@dataclass
class ModelOptions:
    """The :class:`lenet_tf.model.LeNet5` arguments a training run can set (``TrainConfig.model``); the defaults are
    LeNet5's own (a test holds them equal)."""

    batch_norm: bool = option(False, "batch-normalise the hidden layers", group="model")
    dropout: float = option(0.0, "drop rate on the fully connected layers", range=DROPOUT, group="model")
    activation: str = option("relu", "hidden activation", choices=ACTIVATIONS, group="model")
    init_stddev: float | None = option(None, "stddev of the truncated-normal weights (none: He scaling by fan-in)",
                                       range=INIT_STDDEV, group="model")
    uninvert: bool = option(False, "at prediction, before the network, invert back a white-paper region reaching "
                                   "the picture's edge (a band of glare, a negative corner); training leaves such "
                                   "regions to the network", group="model")
    clean_inputs: bool = option(False, "before the network, flatten each image's background, drop isolated specks "
                                       "and restore its contrast, in training and at prediction alike",
                                group="model")
    deskew: bool = option(False, "before the network, shear each image upright by its ink's second moments (slant "
                                 "removed), in training and at prediction alike", group="model")
    kernels: str | None = option(None, "how convolutions and poolings are computed (none: the faster of native and "
                                       "nn, measured on this machine)", choices=(None, *KERNEL_NAMES), group="model",
                                 cluster="TensorFlow's distributed runtime runs only TensorFlow's own kernels")


_CAPTURE = "capture distortions (with --augment)"
_STYLES = "style options (off in the clean epochs)"


@dataclass
class TrainConfig:
    """Everything that defines a training run; ``model`` holds :class:`lenet_tf.model.LeNet5` arguments that
    differ from its defaults (:class:`ModelOptions` lists those the command line offers)."""

    epochs: int = option(10, "passes over the training set", range=Range(int, 1))
    batch_size: int = option(128, "examples per Adam step", range=Range(int, 1))
    # Chosen on validation accuracy (docs/accuracy.md): cosine decay from 2e-3 beat a constant 1e-3 and
    # exponential decay.
    learning_rate: float = option(2e-3, "Adam learning rate", range=Range(float, 0, low_open=True), flag="--lr")
    schedule: str = option("cosine", "learning-rate schedule over epochs", choices=SCHEDULES)
    lr_decay: float = option(0.8, "per-epoch factor of the exponential schedule",
                             range=Range(float, 0, 1, low_open=True))
    weight_decay: float = option(0.0, "L2 penalty on the weight matrices", range=Range(float, 0))
    label_smoothing: float = option(0.0, "train towards 1-EPSILON on the label and EPSILON/10 on every class",
                                    range=Range(float, 0, 1, high_open=True), metavar="EPSILON")
    weight_averaging: float = option(
        0.0, "validate, checkpoint and test an exponential moving average of the weights with this decay per "
             "step, e.g. 0.999 (0: off)", range=Range(float, 0, 1, high_open=True), metavar="DECAY",
        cluster="the synchronous optimizer applies updates in the chief's queue runner, where no averaging step "
                "can follow them")
    augment: bool = option(False, "random shifts/rotations/shears/zooms in the graph", group="augmentation")
    augment_strength: float = option(1.0, "factor on the augmentation's shift/rotation/shear/zoom limits",
                                     range=Range(float, 0, 10), group="augmentation")
    clean_epochs: int = option(0, "with --augment, train the last N epochs (all, if fewer) on undistorted images",
                               range=Range(int, 0), metavar="N", group="augmentation")
    elastic_alpha: float = option(0.0, "with --augment, also elastic distortions displacing pixels by ALPHA times "
                                       "a smoothed random field (0: none)", range=Range(float, 0, 100),
                                  flag="--elastic", metavar="ALPHA", group="augmentation")
    elastic_sigma: float = option(4.0, "smoothness of the elastic field, in pixels",
                                  range=Range(float, 0, 16, low_open=True), group="augmentation")
    pen_width: float = option(0.0, "blend each digit towards a 3x3 dilation or erosion (thicker/thinner pen) by up "
                                   "to AMOUNT (0: off)", range=Range(float, 0, 1), metavar="AMOUNT", group=_CAPTURE)
    blur: float = option(0.0, "blend each digit towards a Gaussian blur of SIGMA pixels by a random weight (0: off)",
                         range=Range(float, 0, 8), metavar="SIGMA", group=_CAPTURE)  # 8 px: a blot
    low_res: float = option(0.0, "probability of a coarse scan: down to 16 or 12 pixels and up again",
                            range=Range(float, 0, 1), metavar="P", group=_CAPTURE)
    gamma: float = option(0.0, "raise pixel values to exp(u), u uniform in [-G, G] (0: off)",
                          range=Range(float, 0, 5), metavar="G", group=_CAPTURE)  # exp(5): ink gone
    paper: float = option(0.0, "grey paper up to LEVEL (0..1) inside each digit's box (0: off)",
                          range=Range(float, 0, 1, high_open=True), metavar="LEVEL", group=_CAPTURE)
    damage: float = option(0.0, "damage this share of the digits as captures do: specks, noise, a lifted or uneven "
                                "background, straight or zig-zag lines through the digit, hollow strokes, an "
                                "inverted box or band, dim ink",
                           range=Range(float, 0, 1), metavar="P", group=_CAPTURE)
    aspect: float = option(0.0, "with --augment, scale each digit's width by exp(u), u uniform in [-A, A]",
                           range=Range(float, 0, 1), metavar="A", group=_STYLES)
    fill_box: float = option(0.0, "stretch this share of the digits to fill a square box, as scanners that do not "
                                  "keep the aspect ratio do", range=Range(float, 0, 1), metavar="P", group=_STYLES)
    restroke: float = option(0.0, "redraw this share of the digits along their skeleton with a random round pen "
                                  "(skeletons cached once)", range=Range(float, 0, 1), metavar="P", group=_STYLES)
    synthetic: float = option(0.0, "replace this share of each batch by synthetic digits of styles MNIST lacks "
                                   "(fonts, stroke templates; cached once)", range=Range(float, 0, 1), metavar="P",
                              group=_STYLES)
    ensemble: int = option(1, "train N LeNet-5 members with different seeds side by side on the same batches; "
                              "evaluate, predict, serve and export average their probabilities (1: a single model)",
                           range=ENSEMBLE, metavar="N")
    calibrate: bool = option(False, "after training, fit \"I can't read this\" on the best epoch, as `lenet-tf "
                                    "calibrate` does (rejection.npz beside run.json; a few seconds)")
    seed: int = option(0, "seed of the split, shuffling and initialisation",
                       range=Range(int, 0, 2**32 - 1))  # scikit-learn's and numpy's seeds are 32-bit
    valid_size: int = option(5000, "training images held out for validation", range=Range(int, 1))
    towers: int = option(0, "shards per batch run in parallel (0: one per CPU core, 1 on a GPU)",
                         range=Range(int, 0), group="machine")
    precision: str | None = option(None, "auto = bf16 where the CPU computes it natively (AMX-BF16 or "
                                         "AVX512-BF16), else fp32; variables and checkpoints stay fp32 (none: "
                                         "$LENET_TF_PRECISION, else auto)", choices=(None, *PRECISIONS),
                                   group="machine")
    model: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model = dict(self.model)

    # ---------------------------------------------------------------------------------------------- checks

    def validate(self) -> None:
        """Raises :class:`ConfigError` for any value out of range, before any work starts."""
        for spec in options():
            try:
                spec.check(self.value(spec))
            except ConfigError as err:
                raise ConfigError(f"model: {err}" if spec.model else str(err)) from None
        unknown = sorted(set(self.model) - set(MODEL_ARGUMENTS))
        if unknown:
            raise ConfigError(f"model: unknown LeNet5 arguments {', '.join(unknown)} (known: "
                              f"{', '.join(MODEL_ARGUMENTS)})")
        if self.towers > self.batch_size:
            raise ConfigError(f"towers must lie in 0..batch size, got {self.towers}")

    def cluster_refusals(self) -> list[str]:
        """What of this configuration a cluster cannot train, one line each (empty: it trains all of it)."""
        return [f"{spec.flag_name} is not available in cluster mode: {spec.cluster}" for spec in options()
                if spec.cluster and self.value(spec) != spec.default]

    # ---------------------------------------------------------------------------------------------- derived facts

    def value(self, spec: Option):
        """The value of ``spec`` in this configuration (a model option's LeNet5 default when unset)."""
        return self.model.get(spec.name, spec.default) if spec.model else getattr(self, spec.name)

    def capture_distortions(self) -> dict:
        """The keyword arguments of :func:`lenet_tf.data.augment.capture_distort`."""
        return {name: getattr(self, name) for name in CAPTURE_DISTORTIONS}

    @property
    def styles(self) -> bool:
        """Whether a style option that replaces or redraws digits (fill box, restroke, synthetic) is on."""
        return bool(self.fill_box or self.restroke or self.synthetic)

    def augments_epoch(self, epoch: int) -> bool:
        """Whether (0-based) ``epoch`` trains on distorted images: with ``augment`` or a style option, all but the
        clean epochs."""
        return (self.augment or self.styles) and epoch < self.epochs - self.clean_epochs

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate used throughout (0-based) ``epoch``."""
        if self.schedule == "exponential":
            return self.learning_rate * self.lr_decay ** epoch
        if self.schedule == "cosine":
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        return self.learning_rate

    # ---------------------------------------------------------------------------------------------- records

    def to_record(self) -> dict:
        """JSON-ready record for ``run.json``'s ``train`` (every field, ``model`` as given)."""
        return asdict(self)

    @classmethod
    def from_record(cls, train: dict, model: dict | None = None) -> TrainConfig:
        """The configuration a ``run.json`` recorded: its ``train`` record (fields it predates take their
        defaults, fields it does not know are dropped) and, when given, the network's ``model`` record (LeNet5's
        ``get_config``, whose name and seed are the run's own)."""
        known = {f.name for f in fields(cls)} - {"model"}
        values = {key: value for key, value in train.items() if key in known}
        stored = model if model is not None else train.get("model", {})
        return cls(**values, model={k: v for k, v in stored.items() if k not in ("name", "seed")})

    def with_overrides(self, **overrides) -> TrainConfig:
        """A copy with ``overrides`` applied (``model`` ones merged into this config's)."""
        model = {**self.model, **overrides.pop("model", {})}
        return replace(self, **overrides, model=model)


CAPTURE_DISTORTIONS = ("pen_width", "blur", "low_res", "gamma", "paper")  # lenet_tf.data.augment.capture_distort
# Every LeNet5 argument a run's model record may hold besides the declared options (its defaults are LeNet5's).
MODEL_ARGUMENTS = (*(f.name for f in fields(ModelOptions)), "num_classes", "bn_momentum", "bn_epsilon",
                   "input_mean", "input_std")


def _options_of(cls, model: bool) -> tuple[Option, ...]:
    found = []
    for f in fields(cls):
        if "option" in f.metadata:
            default = f.default if f.default is not MISSING else f.default_factory()
            kind = {"bool": bool, "int": int, "float": float, "str": str}.get(str(f.type).split(" |")[0], str)
            found.append(Option(f.name, kind, default, model=model, **f.metadata["option"]))
    return tuple(found)


_OPTIONS = _options_of(TrainConfig, False) + _options_of(ModelOptions, True)


def options() -> tuple[Option, ...]:
    """Every training option, TrainConfig's fields first, then the model's."""
    return _OPTIONS


def option_named(name: str) -> Option:
    """The option called ``name``."""
    return next(spec for spec in _OPTIONS if spec.name == name)


def check_values(values: dict, where: str) -> None:
    """Raises ConfigError naming ``where`` unless ``values`` (TrainConfig keyword arguments) name only known
    options, each in range."""
    known = {spec.name: spec for spec in _OPTIONS if not spec.model}
    for key, value in values.items():
        if key == "model":
            model = {spec.name: spec for spec in _OPTIONS if spec.model}
            for name, setting in value.items():
                if name not in MODEL_ARGUMENTS:
                    raise ConfigError(f"{where}: unknown model argument {name!r}")
                if name in model:
                    model[name].check(setting)
        elif key not in known:
            raise ConfigError(f"{where}: unknown option {key!r}")
        else:
            known[key].check(value)
