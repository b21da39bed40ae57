"""The ``lenet-tf`` command: parses flags and calls the library; errors become one line and exit 1."""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import signal
import sys
import traceback

from lenet_tf.core.errors import ConfigError, LeNetError
from lenet_tf.core.quiet import DEBUG_ENV
from lenet_tf.core.timing import STARTED  # noqa: F401  (first import: the clock of `--verbose` starts here)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="folder with the four MNIST .gz files (default: $LENET_TF_DATA_DIR, "
                        "else ./data/mnist, else ~/.cache/lenet_tf/mnist)")
    parser.add_argument("--skip-checksum", action="store_true",
                        help="accept IDX files that are not the official MNIST release (default: verify SHA-256)")


def _add_precision_flag(parser: argparse.ArgumentParser) -> None:
    from lenet_tf.core.precision import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS,
                        help="auto = bf16 where the CPU computes it natively (AMX-BF16 or AVX512-BF16), else fp32; "
                             "variables and checkpoints stay fp32 (default: $LENET_TF_PRECISION, else auto)")


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def _add_tta_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average the probabilities of each digit and of 4 copies "
                             "shifted by one pixel (up, down, left, right), in the graph; 5x the inference work "
                             "(default: off)")


def _add_train_parser(commands) -> None:
    from lenet_tf.core.options import ACTIVATIONS, RANGES, SCHEDULES
    from lenet_tf.training.presets import PRESETS

    p = commands.add_parser("train", help="train LeNet-5 on MNIST and checkpoint it",
                            description="Train LeNet-5 on MNIST, keep the best epoch by validation accuracy, "
                                        "and report test accuracy.")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="recipe whose values the flags below override (default: 'default', which is 'plain' with "
                        "--augment and the style options; in distributed training without --fill-box, --restroke "
                        "and --synthetic)")
    p.add_argument("--epochs", type=RANGES["epochs"].parse, help="passes over the training set (default: 10)")
    p.add_argument("--batch-size", type=RANGES["batch_size"].parse, help="examples per Adam step (default: 128)")
    p.add_argument("--lr", type=RANGES["learning_rate"].parse, dest="learning_rate", help="Adam learning rate (default: 0.002)")
    p.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule over epochs (default: cosine)")
    p.add_argument("--lr-decay", type=RANGES["lr_decay"].parse,
                   help="per-epoch factor of the exponential schedule (default: 0.8)")
    p.add_argument("--weight-decay", type=RANGES["weight_decay"].parse, help="L2 penalty on the weight matrices (default: 0)")
    p.add_argument("--label-smoothing", type=RANGES["label_smoothing"].parse, metavar="EPSILON",
                   help="train towards 1-EPSILON on the label and EPSILON/10 on every class (default: 0)")
    p.add_argument("--weight-averaging", type=RANGES["weight_averaging"].parse, metavar="DECAY",
                   help="validate, checkpoint and test an exponential moving average of the weights with "
                        "this decay per step, e.g. 0.999 (default: 0, off)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random shifts/rotations/shears/zooms in the graph (default: on, from the 'default' preset)")
    p.add_argument("--augment-strength", type=RANGES["augment_strength"].parse,
                   help="factor on the augmentation's shift/rotation/shear/zoom limits (default: 1)")
    p.add_argument("--clean-epochs", type=RANGES["clean_epochs"].parse, metavar="N",
                   help="with --augment, train the last N epochs (all, if fewer) on undistorted images (default: 0)")
    p.add_argument("--elastic", type=RANGES["elastic_alpha"].parse, dest="elastic_alpha", metavar="ALPHA",
                   help="with --augment, also elastic distortions displacing pixels by ALPHA times a "
                        "smoothed random field (default: 0, none)")
    p.add_argument("--elastic-sigma", type=RANGES["elastic_sigma"].parse,
                   help="smoothness of the elastic field, in pixels (default: 4)")
    p.add_argument("--pen-width", type=RANGES["pen_width"].parse, metavar="AMOUNT",
                   help="with --augment, blend each digit towards a 3x3 dilation or erosion (thicker/thinner pen) "
                        "by up to AMOUNT, at most 1 (default: 0, off)")
    p.add_argument("--blur", type=RANGES["blur"].parse, metavar="SIGMA",
                   help="with --augment, blend each digit towards a Gaussian blur of SIGMA pixels by a random "
                        "weight (default: 0, off)")
    p.add_argument("--low-res", type=RANGES["low_res"].parse, metavar="P",
                   help="with --augment, probability of a coarse scan: down to 16 or 12 pixels and up again "
                        "(default: 0, off)")
    p.add_argument("--gamma", type=RANGES["gamma"].parse, metavar="G",
                   help="with --augment, raise pixel values to exp(u), u uniform in [-G, G] (default: 0, off)")
    p.add_argument("--paper", type=RANGES["paper"].parse, metavar="LEVEL",
                   help="with --augment, grey paper up to LEVEL (0..1) inside each digit's box (default: 0, off)")
    styles = p.add_argument_group("style options (lenet_tf.training.styles; off in the clean epochs)")
    styles.add_argument("--aspect", type=RANGES["aspect"].parse, metavar="A",
                        help="with --augment, scale each digit's width by exp(u), u uniform in [-A, A] (default preset: 0.3)")
    styles.add_argument("--fill-box", type=RANGES["fill_box"].parse, metavar="P",
                        help="stretch this share of the digits to fill a square box, as scanners that do not keep "
                             "the aspect ratio do (default: 0, off)")
    styles.add_argument("--restroke", type=RANGES["restroke"].parse, metavar="P",
                        help="redraw this share of the digits along their skeleton with a random round pen "
                             "(skeletons cached once; default preset: 0.3)")
    styles.add_argument("--synthetic", type=RANGES["synthetic"].parse, metavar="P",
                        help="replace this share of each batch by synthetic digits of styles MNIST lacks "
                             "(TrueType fonts, stroke templates; cached once; default preset: 0.1)")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="batch-normalise the hidden layers (default: off)")
    p.add_argument("--dropout", type=RANGES["dropout"].parse, help="drop rate on the fully connected layers (default: 0)")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), help="hidden activation (default: relu)")
    p.add_argument("--init-stddev", type=RANGES["init_stddev"].parse,
                   help="stddev of the truncated-normal weights (default: He scaling by fan-in)")
    p.add_argument("--ensemble", type=RANGES["ensemble"].parse, metavar="N",
                   help="train N LeNet-5 members with different seeds side by side on the same batches; evaluate, "
                        "predict, serve and export average their probabilities (default: 1, a single model)")
    p.add_argument("--seed", type=int, help="seed of the split, shuffling and initialisation (default: 0)")
    p.add_argument("--valid-size", type=RANGES["valid_size"].parse, help="training images held out for validation (default: 5000)")
    p.add_argument("--out", default="SavedModel", help="checkpoint folder (default: SavedModel)")
    p.add_argument("--logdir", help="TensorBoard folder; each run logs into a run-DATE-TIME-ID subfolder of its own "
                                    "(default: OUT/logs)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last epoch, with its stored configuration; only "
                        "--epochs may change (default: off)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out; its checkpoints are deleted once the new run has saved its "
                        "first epoch (default: off: a folder holding a run is refused)")
    p.add_argument("--target-accuracy", type=float,
                   help="exit with an error when the test accuracy ends below this fraction (default: none)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_precision_flag(p)
    p.add_argument("--verbose", action="store_true", help="print where the wall time went (default: off)")
    cluster = p.add_argument_group("distributed training (see lenet_tf.training.cluster; default: off, or TF_CONFIG)")
    cluster.add_argument("--cluster", help='JSON {"ps": ["host:port", ...], "worker": ["host:port", ...]}')
    cluster.add_argument("--job", choices=("ps", "worker", "chief"), help="this process's job (chief = worker 0)")
    cluster.add_argument("--task", type=int, default=0, help="this process's index within its job (default: 0)")
    cluster.add_argument("--join-timeout", type=_positive_seconds, default=120.0, metavar="SECONDS",
                         help="end with an error naming the members that have not come after this long "
                              "(default: 120)")
    cluster.add_argument("--member-timeout", type=_positive_seconds, default=5.0, metavar="SECONDS",
                         help="end with an error naming a member that stops answering this long (default: 5)")
    _add_data_flags(p)


def _add_evaluate_parser(commands) -> None:
    p = commands.add_parser("evaluate", help="evaluate a checkpoint on the MNIST test set",
                            description="Restore a checkpoint in a fresh graph and report test metrics.")
    p.add_argument("--checkpoint", default="SavedModel",
                   help="training folder, epoch folder or checkpoint prefix (default: SavedModel)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="which epoch of a training folder to load (default: best)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--report", metavar="DIR", help="also write PNG figures into DIR (default: none)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace figures of the same names already in the --report folder (default: off)")
    p.add_argument("--robustness", nargs="?", const="test", choices=("test", "valid"), metavar="SIDE",
                   help="report accuracy on digits captured unlike MNIST's test set instead: load_digits and "
                        "re-captured MNIST digits (thin/thick pen, blur, low resolution, rotation, noisy paper, "
                        "JPEG); SIDE 'valid' uses the run's validation digits, for choosing options (default: "
                        "off; 'test' when given without SIDE)")
    _add_tta_flag(p)
    _add_precision_flag(p)
    _add_data_flags(p)


def _add_predict_parser(commands) -> None:
    from lenet_tf.core.options import MAX_IMAGE_PIXELS

    p = commands.add_parser("predict", help="classify your own digit images",
                            description="Classify PNG/JPEG/BMP digit images (files or folders), prepared like MNIST. "
                                        f"Images over {MAX_IMAGE_PIXELS:,} pixels are refused.")
    p.add_argument("images", nargs="+", help="image files or folders of images (a folder's non-regular files, "
                   "such as FIFOs, are skipped)")
    p.add_argument("--checkpoint", default="SavedModel", help="training folder (default: SavedModel)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    _add_tta_flag(p)
    _add_precision_flag(p)


def _add_calibrate_parser(commands) -> None:
    p = commands.add_parser("calibrate", help="fit \"I can't read this\" for a trained run",
                            description="Fit the novelty score of lenet_tf.rejection on the run's training digits, "
                                        "choose its threshold on validation digits (MNIST validation, load_digits, "
                                        "pendigits), write rejection.npz beside run.json, and report what it flags "
                                        "of real digits and of synthetic non-digits.")
    p.add_argument("--checkpoint", default="SavedModel", help="training folder (default: SavedModel)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="which epoch of a training folder to calibrate (default: best)")
    p.add_argument("--max-flagged", type=float, default=0.005,
                   help="share of each real validation set the threshold may flag (default: 0.005)")
    p.add_argument("--json", action="store_true", help="print the calibration as JSON")
    _add_precision_flag(p)
    _add_data_flags(p)


def _add_export_parser(commands) -> None:
    from lenet_tf.core.options import EXPORT_FORMATS, TFLITE_QUANTIZATIONS

    p = commands.add_parser("export", help="write a TensorFlow SavedModel or a TFLite model for serving",
                            description="Export the best checkpoint as a SavedModel whose serving signature takes "
                                        "raw uint8 [N,28,28] or [N,28,28,1] digits, or as a .tflite model taking "
                                        "uint8 [N,28,28].")
    p.add_argument("--checkpoint", default="SavedModel",
                   help="training folder, epoch folder or checkpoint prefix (default: SavedModel)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="savedmodel", help="what to write (default: savedmodel)")
    p.add_argument("--quantize", choices=TFLITE_QUANTIZATIONS,
                   help="with --format tflite: none (float32), dynamic (int8 weights) or int8 (int8 weights and "
                        "activations, calibrated on 300 training digits from --data-dir) (default: none)")
    p.add_argument("--out", help="SavedModel folder or .tflite file to write (default: export/lenet5, or "
                                 "export/lenet5.tflite, export/lenet5-dynamic.tflite, export/lenet5-int8.tflite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export of ours in --out, never anything else (default: off)")
    _add_data_flags(p)  # the calibration digits of --quantize int8
    _add_precision_flag(p)  # accepted everywhere; the exported graph is fp32 whatever it says


def _add_serve_parser(commands) -> None:
    def port(text: str) -> int:
        value = int(text)
        if not 0 <= value <= 65535:
            raise argparse.ArgumentTypeError(f"must lie in 0..65535, got {value}")
        return value

    p = commands.add_parser("serve", help="web demo and HTTP API (needs the 'serve' extra)",
                            description="Serve a drawing page at /, POST /predict and TensorFlow Serving's REST API "
                                        "(/v1/models/lenet5), loading the model once.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default="SavedModel", help="training folder (default: SavedModel)")
    source.add_argument("--saved-model", help="a SavedModel from `lenet-tf export`, or a TF Serving base folder of "
                        "numbered versions, instead of a checkpoint (default: none)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    _add_tta_flag(p)
    _add_serving_limit_flags(p)
    _add_precision_flag(p)


def _add_serving_limit_flags(p) -> None:
    """TF Serving's batching parameters and the request deadlines of ``serve`` (docs/serving.md)."""
    from lenet_tf.serving.batching import BatchingOptions
    from lenet_tf.serving.bodies import BodyLimits

    batching, body = BatchingOptions(), BodyLimits()

    def positive(kind):
        def parse(text: str):
            value = kind(text)
            if value <= 0:
                raise argparse.ArgumentTypeError(f"must be positive, got {text}")
            return value
        parse.__name__ = kind.__name__  # argparse names the type in "invalid int value: 'x'"
        return parse

    def at_least_zero(text: str) -> int:
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
        return value

    at_least_zero.__name__ = "int"

    p.add_argument("--max-batch-size", type=positive(int), default=batching.max_batch_size,
                   help=f"digits per model call (default: {batching.max_batch_size})")
    p.add_argument("--batch-timeout-micros", type=at_least_zero, default=batching.batch_timeout_micros,
                   help="how long a queued request waits for more to fill its batch, in microseconds "
                        f"(default: {batching.batch_timeout_micros})")
    p.add_argument("--max-enqueued-batches", type=positive(int), default=batching.max_enqueued_batches,
                   help="batches of digits that may wait; requests beyond get 503 "
                        f"(default: {batching.max_enqueued_batches})")
    p.add_argument("--header-timeout", type=positive(float), default=10.0,
                   help="seconds for a request's headers to arrive, else 408 (default: 10)")
    p.add_argument("--body-timeout", type=positive(float), default=body.timeout,
                   help=f"seconds for a request's body to arrive, extended by one second per --body-min-rate "
                        f"bytes received, else 408 (default: {body.timeout:g})")
    p.add_argument("--body-min-rate", type=positive(float), default=body.min_rate,
                   help=f"bytes per second that extend --body-timeout by one second (default: {body.min_rate:g})")
    p.add_argument("--request-timeout", type=positive(float), default=30.0,
                   help="seconds from a complete request to its answer, else 504 (default: 30)")


def _add_benchmark_parser(commands) -> None:
    from lenet_tf.benchmark import flags as benchmark_flags

    p = commands.add_parser("benchmark", help="training/inference images per second vs the alternatives",
                            description=benchmark_flags.DESCRIPTION)
    benchmark_flags.build_parser(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lenet-tf`` with all sub-commands."""
    parser = argparse.ArgumentParser(prog="lenet-tf", description="LeNet-5 on MNIST with TensorFlow's graph API.")
    parser.add_argument("--debug", action="store_true",
                        help=f"show tracebacks for errors and TensorFlow's own log lines (default: off; "
                             f"{DEBUG_ENV}=1 does the same)")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(commands)
    _add_evaluate_parser(commands)
    _add_predict_parser(commands)
    _add_calibrate_parser(commands)
    _add_export_parser(commands)
    _add_serve_parser(commands)
    _add_benchmark_parser(commands)
    return parser


def _train_config(args):
    """The run's configuration: the preset with the explicit flags, or with --resume the stored one with them."""
    from lenet_tf.training.presets import command_line_preset, with_preset
    from lenet_tf.training.trainer import TrainConfig, resume_config

    flags = ("epochs", "batch_size", "learning_rate", "schedule", "lr_decay", "weight_decay", "augment",
             "augment_strength", "clean_epochs", "elastic_alpha", "elastic_sigma", "label_smoothing",
             "weight_averaging", "valid_size", "pen_width", "blur", "low_res", "gamma", "paper", "aspect", "fill_box",
             "restroke", "synthetic", "seed", "ensemble")
    overrides = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    model_flags = {"batch_norm": args.batch_norm, "dropout": args.dropout, "activation": args.activation,
                   "init_stddev": args.init_stddev}
    overrides["model"] = {k: v for k, v in model_flags.items() if v is not None}
    if not args.resume:
        distributed = bool(args.cluster or os.environ.get("TF_CONFIG"))
        base = command_line_preset(args.preset, distributed)
        return TrainConfig(**{**base, **overrides, "model": {**base["model"], **overrides["model"]}})
    if args.preset:  # an explicit preset must agree with the stored run like any other flag
        overrides = with_preset(args.preset, **overrides)
    return resume_config(args.out, **overrides)


def _run_train(args) -> int:
    from lenet_tf.runs.checkpoint import read_run
    from lenet_tf.training.trainer import describe_resume, train

    in_cluster = bool(args.cluster or os.environ.get("TF_CONFIG"))
    if not in_cluster:  # read and check MNIST while TensorFlow imports (train() takes the result)
        from lenet_tf.data.mnist import preload_mnist

        preload_mnist(args.data_dir, verify=not args.skip_checksum)
        from lenet_tf.core.native_ops import on_build

        on_build(lambda folder: print(f"lenet-tf: compiling the native ops for this CPU, once (about 10 s), into "
                                      f"{folder}", file=sys.stderr, flush=True))
    if in_cluster and args.resume:
        raise ConfigError("--resume is not available in cluster mode: a cluster run starts from scratch (resume it "
                          "in one process with `lenet-tf train --resume`, or train a new run with another --out)")
    config = _train_config(args)
    try:
        if in_cluster:
            result = _train_in_cluster(args, config)
            if result is None:
                return 0
        else:
            if args.resume:
                print(f"lenet-tf: {args.out}: {describe_resume(config, read_run(args.out))}", file=sys.stderr)
            result = train(config, args.out, data_dir=args.data_dir, verify_checksums=not args.skip_checksum,
                           resume=args.resume, overwrite=args.overwrite, logdir=args.logdir,
                           progress=not args.no_progress)
    except KeyboardInterrupt:
        if not in_cluster:
            print(f"lenet-tf: interrupted; the last finished epoch stays in {args.out} (continue with --resume)",
                  file=sys.stderr)
        else:  # the chief's training folder keeps its last epoch; the other roles write nothing
            print("lenet-tf: interrupted" + (f"; the last finished epoch stays in {args.out}"
                                            if getattr(args, "chief", False) else ""), file=sys.stderr, flush=True)
            # A TF1 gRPC server cannot be shut down, and an interpreter exit can block on it: end here, as the
            # watchdog does when the signal reaches it first (lenet_tf.training.watchdog).
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    summary = {
        "out": str(result.out_dir), "best_epoch": result.best_epoch, "valid_accuracy": result.valid_accuracy,
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
        "seconds": round(result.seconds, 2), "images_per_second": round(result.images_per_second),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"best epoch {result.best_epoch}: valid accuracy {result.valid_accuracy:.4%}, "
              f"test accuracy {result.test_accuracy:.4%} (loss {result.test_loss:.4f}); "
              f"{result.seconds:.1f} s training, {result.images_per_second:,.0f} images/s; saved in {result.out_dir}")
    if args.verbose and result.timing:
        from lenet_tf.core.timing import format_timing

        print(format_timing(result.timing), file=sys.stderr)
    if args.target_accuracy is not None and result.test_accuracy < args.target_accuracy:
        print(f"lenet-tf: error: test accuracy {result.test_accuracy:.4%} is below the target "
              f"{args.target_accuracy:.4%}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _train_in_cluster(args, config):
    """Runs this process's part of a distributed run; returns the result on the chief, else ``None``."""
    from lenet_tf.training.cluster import check_distributable, parse_role, run_parameter_server, train_worker

    role = parse_role(args.cluster, args.job, args.task if args.cluster else None)
    args.chief = role.is_chief
    check_distributable(config)  # by every role, the parameter servers too
    timeouts = {"join_timeout": args.join_timeout, "member_timeout": args.member_timeout}
    if role.job == "ps":
        run_parameter_server(role, **timeouts)
        print(f"parameter server {role.index}: every worker is done", file=sys.stderr)
        return None
    result = train_worker(config, role, args.out, data_dir=args.data_dir, verify_checksums=not args.skip_checksum,
                          overwrite=args.overwrite, logdir=args.logdir, progress=not args.no_progress, **timeouts)
    if result is None:
        print(f"worker {role.index}: done", file=sys.stderr)
    return result


def _run_evaluate(args) -> int:
    from lenet_tf.evaluation.evaluate import evaluate_robustness, run_test_set

    figures = None
    if args.report:  # refuse existing figures before any work (matplotlib loads only when figures are wanted)
        if args.robustness:
            from lenet_tf.evaluation import robustness_figures as figures
        else:
            from lenet_tf.evaluation import figures
        figures.check_report_dir(args.report, args.overwrite, figures.FIGURES)
    if args.robustness:
        result = evaluate_robustness(args.checkpoint, args.data_dir, verify_checksums=not args.skip_checksum,
                                     which=args.which, suite=args.robustness, tta=args.tta)
        evaluation = result
    else:
        result = run_test_set(args.checkpoint, args.data_dir, verify_checksums=not args.skip_checksum,
                              which=args.which, tta=args.tta)
        evaluation = result.evaluation
    if figures:
        write = figures.write_robustness_report if args.robustness else figures.write_report
        write(result, args.report, args.overwrite)
    print(json.dumps(evaluation.to_dict(), indent=2) if args.json else evaluation.format())
    if args.report and not args.json:
        print(f"\nfigures written to {args.report}")
    return 0


def _run_predict(args) -> int:
    import warnings

    from PIL import Image

    from lenet_tf.serving.predict import predict_files
    from lenet_tf.trained import TrainedModel

    with TrainedModel(args.checkpoint, tta=args.tta) as model, warnings.catch_warnings():
        # PIL warns about pictures it still opens; lenet_tf refuses those (a per-file error) under a lower limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        results = predict_files(args.images, model)
    if not results:
        raise LeNetError(f"no image files found in {' '.join(args.images)}")
    if args.json:
        print(json.dumps([vars(r) for r in results], indent=2))
    for result in results:
        if result.error:
            print(f"lenet-tf: error: {result.error}", file=sys.stderr)
        elif not args.json:
            top3 = ", ".join(f"{digit} {p:.3f}" for digit, p in result.top3)
            note = f"  ({result.note})" if result.note else ""
            answer = f"{result.digit} (p={result.probability:.3f})" if result.reason is None else result.reason
            print(f"{result.file}: {answer}  top-3: {top3}{note}")
    return EXIT_ERROR if any(r.error for r in results) else 0


def _run_calibrate(args) -> int:
    from lenet_tf.evaluation.calibration import calibrate

    if not 0 <= args.max_flagged < 1:
        raise ConfigError(f"--max-flagged must be in [0, 1), got {args.max_flagged}")
    result = calibrate(args.checkpoint, args.data_dir, verify_checksums=not args.skip_checksum, which=args.which,
                       max_flagged=args.max_flagged)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.format())
    return 0


def _run_export(args) -> int:
    if args.format == "tflite":
        return _run_export_tflite(args)
    if args.quantize:
        raise ConfigError("--quantize needs --format tflite")
    from lenet_tf.serving.saved_model import export_saved_model

    path = export_saved_model(args.checkpoint, args.out or "export/lenet5", overwrite=args.overwrite)
    print(f"SavedModel written to {path} (signatures serving_default: images uint8 [N,28,28], and "
          "predict_images: encoded PNG/JPEG strings [N] -> classes, probabilities)")
    return 0


def _run_export_tflite(args) -> int:
    from lenet_tf.serving.tflite import export_tflite

    quantize = args.quantize or "none"
    out = args.out or ("export/lenet5.tflite" if quantize == "none" else f"export/lenet5-{quantize}.tflite")
    path = export_tflite(args.checkpoint, out, quantize, overwrite=args.overwrite, data_dir=args.data_dir,
                         verify_checksums=not args.skip_checksum)
    print(f"TFLite model written to {path} ({path.stat().st_size:,} bytes; images uint8 [N,28,28] -> "
          f"probabilities {'uint8 (p = q/256)' if quantize == 'int8' else 'float32'} [N,10])")
    return 0


def _run_serve(args) -> int:
    from lenet_tf.core.precision import choose

    try:
        from lenet_tf.serving.server import serve
    except ImportError as err:
        raise LeNetError(f"serving needs {err.name}: pip install 'lenet_tf[serve]'") from None
    from lenet_tf.serving.batching import BatchingOptions
    from lenet_tf.serving.bodies import BodyLimits
    from lenet_tf.serving.server import ServerOptions

    options = ServerOptions(
        BatchingOptions(args.max_batch_size, args.batch_timeout_micros, args.max_enqueued_batches),
        BodyLimits(timeout=args.body_timeout, min_rate=args.body_min_rate),
        header_timeout=args.header_timeout, request_timeout=args.request_timeout)
    serve(args.checkpoint, args.saved_model, args.host, args.port,
          ready=lambda url: print(f"serving on {url} in {choose().used} (Ctrl-C stops)", file=sys.stderr,
                                  flush=True), tta=args.tta, options=options)
    return 0


def _run_benchmark(args) -> int:
    from lenet_tf.benchmark.throughput import run_and_print

    return run_and_print(args)


_COMMANDS = {"train": _run_train, "evaluate": _run_evaluate, "predict": _run_predict, "calibrate": _run_calibrate,
             "export": _run_export,
             "serve": _run_serve, "benchmark": _run_benchmark}


# The commands whose run time the precision decides print it (and the CPU's features) once at start; predict
# and export stay quiet (export writes fp32 graphs whatever it is), serve names it in its "serving on" line and
# the benchmark in its header.
_ANNOUNCE_PRECISION = ("train", "evaluate")


def _announce_precision(args) -> None:
    """Hands ``--precision`` to the library (as ``$LENET_TF_PRECISION``); for :data:`_ANNOUNCE_PRECISION`, the
    choice is printed once on stderr when the work starts (after the inputs proved usable)."""
    from lenet_tf.core.precision import PRECISION_ENV, choose, on_first_use

    if args.precision:
        os.environ[PRECISION_ENV] = args.precision
    choose()  # an impossible choice (bf16 on a GPU) is refused at once
    if args.command in _ANNOUNCE_PRECISION:
        on_first_use(lambda precision: print(f"lenet-tf: {precision.describe()}", file=sys.stderr, flush=True))


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lenet-tf``; returns the exit status."""
    # At exit the garbage collector would walk every object TensorFlow made (1-2 s); frozen objects it skips.
    atexit.register(gc.freeze)
    args = build_parser().parse_args(argv)  # without importing TensorFlow, so --help and flag errors are instant
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # TensorFlow's own log lines too (lenet_tf.core.quiet); subprocesses inherit it
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # SIGTERM stops training like Ctrl-C
    try:
        if args.command == "train" and not (args.cluster or os.environ.get("TF_CONFIG")):
            from lenet_tf.runs.lock import refuse_if_written

            refuse_if_written(args.out, "training folder")  # a second writer is told at once, before TF loads
        if hasattr(args, "precision"):
            _announce_precision(args)
        return _COMMANDS[args.command](args)
    except LeNetError as err:
        if args.debug:
            traceback.print_exc()
        print(f"lenet-tf: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("lenet-tf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
