"""``lenet-tf train``: flags derived from the options' declarations (:mod:`lenet_tf.training.config`), and the call
of the training library (one process, or one role of a cluster)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from lenet_tf.core.errors import ConfigError, LeNetError
from lenet_tf.core.options import SECONDS, Range, path_flag
from lenet_tf.training.config import Option, TrainConfig, options
from lenet_tf.training.presets import DEFAULT_PRESET, PRESETS, with_preset
from lenet_tf.training.watchdog import JOIN_TIMEOUT_SECONDS, MEMBER_TIMEOUT_SECONDS

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def preset_named(argv: list[str] | None) -> str:
    """The preset a command line asks for (``--preset NAME`` or ``--preset=NAME``), else the default one; an
    unknown name is left for argparse to refuse."""
    argv = sys.argv[1:] if argv is None else argv
    for i, word in enumerate(argv):
        name = word.split("=", 1)[1] if word.startswith("--preset=") else (
            argv[i + 1] if word == "--preset" and i + 1 < len(argv) else None)
        if name in PRESETS:
            return name
    return DEFAULT_PRESET


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_option(parser, spec: Option, effective) -> None:
    """The flag of one option; its help names the value it takes under the chosen preset."""
    kwargs: dict = {"dest": spec.name, "default": None, "help": f"{spec.help} (default: {_shown(effective)})"}
    if spec.kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif spec.choices is not None:
        kwargs["choices"] = [c for c in spec.choices if c is not None]
    else:
        kwargs["type"] = spec.range.parse if spec.range is not None else spec.kind
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    parser.add_argument(spec.flag_name, **kwargs)


def add_parser(commands, argv: list[str] | None) -> None:
    """Adds ``train`` with one flag per option, each help showing the default of the preset ``argv`` names."""
    preset = preset_named(argv)
    values = with_preset(preset)
    p = commands.add_parser("train", help="train LeNet-5 on MNIST and checkpoint it",
                            description="Train LeNet-5 on MNIST, keep the best epoch by validation accuracy, "
                                        "and report test accuracy. Each flag's default is that of the preset "
                                        f"(shown: {preset!r}).")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help=f"recipe whose values the flags below override (default: {DEFAULT_PRESET})")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in options():
        target = p if spec.group == "training" else groups.setdefault(spec.group, p.add_argument_group(spec.group))
        effective = values["model"].get(spec.name, spec.default) if spec.model else values.get(spec.name,
                                                                                                 spec.default)
        _add_option(target, spec, effective)
    p.add_argument("--out", type=path_flag, default="SavedModel", help="checkpoint folder (default: SavedModel)")
    p.add_argument("--logdir", type=path_flag,
                   help="TensorBoard folder; each run logs into a run-DATE-TIME-ID subfolder of its own "
                        "(default: OUT/logs)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last epoch, with its stored configuration; only "
                        "--epochs may change (default: off)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out; its checkpoints are deleted once the new run has saved its "
                        "first epoch (default: off: a folder holding a run is refused)")
    p.add_argument("--target-accuracy", type=Range(float, 0, 1).parse, metavar="FRACTION",
                   help="exit with an error when the test accuracy ends below this fraction (default: none)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--verbose", action="store_true", help="print where the wall time went (default: off)")
    cluster = p.add_argument_group("distributed training (see lenet_tf.training.cluster; default: off, or TF_CONFIG)")
    cluster.add_argument("--cluster", help='JSON {"ps": ["host:port", ...], "worker": ["host:port", ...]}')
    cluster.add_argument("--job", choices=("ps", "worker", "chief"), help="this process's job (chief = worker 0)")
    cluster.add_argument("--task", type=int, default=0, help="this process's index within its job (default: 0)")
    cluster.add_argument("--join-timeout", type=SECONDS.parse, default=JOIN_TIMEOUT_SECONDS, metavar="SECONDS",
                         help="end with an error naming the members that have not come after this long "
                              f"(default: {JOIN_TIMEOUT_SECONDS:g})")
    cluster.add_argument("--member-timeout", type=SECONDS.parse, default=MEMBER_TIMEOUT_SECONDS, metavar="SECONDS",
                         help="end with an error naming a member that stops answering this long "
                              f"(default: {MEMBER_TIMEOUT_SECONDS:g})")
    p.add_argument("--data-dir", type=path_flag,
                   help="folder with the four MNIST .gz files (default: $LENET_TF_DATA_DIR, "
                   "else ./data/mnist, else ~/.cache/lenet_tf/mnist)")
    p.add_argument("--skip-checksum", action="store_true",
                   help="accept IDX files that are not the official MNIST release (default: verify SHA-256)")


def in_cluster(args) -> bool:
    """Whether this ``train`` runs as one role of a cluster (``--cluster``, or ``$TF_CONFIG``)."""
    return bool(args.cluster or os.environ.get("TF_CONFIG"))


def config_from_args(args) -> TrainConfig:
    """The run's configuration: the preset with the flags given, or with --resume the stored one with them."""
    overrides = {spec.name: getattr(args, spec.name) for spec in options()
                 if not spec.model and getattr(args, spec.name) is not None}
    overrides["model"] = {spec.name: getattr(args, spec.name) for spec in options()
                          if spec.model and getattr(args, spec.name) is not None}
    if not args.resume:
        return TrainConfig(**with_preset(args.preset, **overrides))
    from lenet_tf.training.trainer import resume_config

    if args.preset:  # an explicit preset must agree with the stored run like any other flag
        overrides = with_preset(args.preset, **overrides)
    return resume_config(args.out, **overrides)


def _notice(message: str) -> None:
    print(f"lenet-tf: {message}", file=sys.stderr, flush=True)


def run(args) -> int:
    """``lenet-tf train``; returns the exit status."""
    from lenet_tf.runs.checkpoint import read_run
    from lenet_tf.training.trainer import check_resumable, describe_resume, train

    cluster = in_cluster(args)
    if cluster and args.resume:
        raise ConfigError("--resume is not available in cluster mode: a cluster run starts from scratch (resume it "
                          "in one process with `lenet-tf train --resume`, or train a new run with another --out)")
    if not cluster:  # read and check MNIST while TensorFlow imports (train() takes the result)
        from lenet_tf.data.mnist import preload_mnist

        preload_mnist(args.data_dir, verify=not args.skip_checksum)
    config = config_from_args(args)
    role = None
    if cluster:
        from lenet_tf.training.cluster import parse_role

        role = parse_role(args.cluster, args.job, args.task if args.cluster else None)
    try:
        if role is not None:
            result = _train_in_cluster(args, config, role)
            if result is None:
                return 0
        else:
            if args.resume:  # refused before the plan is told
                previous = read_run(args.out)
                check_resumable(config, previous, Path(args.out))
                _notice(f"{args.out}: {describe_resume(config, previous)}")
            result = train(config, args.out, data_dir=args.data_dir, verify_checksums=not args.skip_checksum,
                           resume=args.resume, overwrite=args.overwrite, logdir=args.logdir,
                           progress=not args.no_progress, notice=_notice)
    except KeyboardInterrupt:
        if role is None:
            _notice(f"interrupted; {_interrupted_state(args.out)}")
            return EXIT_INTERRUPTED
        # The chief's training folder keeps its last epoch; the other roles write nothing.
        _notice("interrupted" + (f"; the last finished epoch stays in {args.out}" if role.is_chief else ""))
        # A TF1 gRPC server cannot be shut down, and an interpreter exit can block on it: end here, as the
        # watchdog does when the signal reaches it first (lenet_tf.training.watchdog).
        with contextlib.suppress(Exception):  # a closed or full output must not keep it from ending
            sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)
    summary = {
        "out": str(result.out_dir), "best_epoch": result.best_epoch, "valid_accuracy": result.valid_accuracy,
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
        "seconds": round(result.seconds, 2), "images_per_second": round(result.images_per_second),
        "rejection": result.calibration,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"best epoch {result.best_epoch}: valid accuracy {result.valid_accuracy:.4%}, "
              f"test accuracy {result.test_accuracy:.4%} (loss {result.test_loss:.4f}); "
              f"{result.seconds:.1f} s training, {result.images_per_second:,.0f} images/s; saved in {result.out_dir}")
        if result.calibration:
            from lenet_tf.rejection.calibration import Calibration

            print(Calibration(**result.calibration).summary())
    if args.verbose and result.timing:
        from lenet_tf.core.timing import format_timing

        print(format_timing(result.timing), file=sys.stderr)
    if args.target_accuracy is not None and result.test_accuracy < args.target_accuracy:
        print(f"lenet-tf: error: test accuracy {result.test_accuracy:.4%} is below the target "
              f"{args.target_accuracy:.4%}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _interrupted_state(out) -> str:
    """What an interrupted training left in ``out``, truthfully: a recorded epoch to resume, or nothing."""
    from lenet_tf.runs.checkpoint import describe_run, read_run

    try:
        run = read_run(out)
    except LeNetError:
        return f"no epoch was finished, so {out} holds no run to resume"
    return f"{out} holds the last finished epoch ({describe_run(run)}); continue with --resume"


def _train_in_cluster(args, config: TrainConfig, role):
    """Runs this process's part of a distributed run as ``role``; returns the result on the chief, else ``None``."""
    from lenet_tf.training.cluster import check_distributable, run_parameter_server, train_worker

    check_distributable(config)  # by every role, the parameter servers too
    timeouts = {"join_timeout": args.join_timeout, "member_timeout": args.member_timeout}
    if role.job == "ps":
        run_parameter_server(role, **timeouts)
        print(f"parameter server {role.index}: every worker is done", file=sys.stderr)
        return None
    result = train_worker(config, role, args.out, data_dir=args.data_dir, verify_checksums=not args.skip_checksum,
                          overwrite=args.overwrite, logdir=args.logdir, progress=not args.no_progress,
                          notice=_notice, **timeouts)
    if result is None:
        print(f"worker {role.index}: done", file=sys.stderr)
    return result
