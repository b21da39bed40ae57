"""The ``lenet-tf`` command: parses flags and calls the library; errors become one line and exit 1."""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import json
import os
import signal
import sys
import traceback

from lenet_tf.core.errors import ConfigError, LeNetError, OutputError, printable
from lenet_tf.core.options import IMAGE_SUFFIXES, path_flag
from lenet_tf.core.outputs import describe_os_error
from lenet_tf.core.quiet import DEBUG_ENV, debugging
from lenet_tf.core import timing  # imported first: `lenet-tf`'s clock starts with the process
from lenet_tf.cli import train as train_command

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=path_flag,
                        help="folder with the four MNIST .gz files (default: $LENET_TF_DATA_DIR, "
                        "else ./data/mnist, else ~/.cache/lenet_tf/mnist)")
    parser.add_argument("--skip-checksum", action="store_true",
                        help="accept IDX files that are not the official MNIST release (default: verify SHA-256)")


def _add_precision_flag(parser: argparse.ArgumentParser) -> None:
    from lenet_tf.core.precision import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS,
                        help="auto = bf16 where the CPU computes it natively (AMX-BF16 or AVX512-BF16), else fp32; "
                             "variables and checkpoints stay fp32 (default: $LENET_TF_PRECISION, else auto)")


def _add_tta_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average the probabilities of each digit and of 4 copies "
                             "shifted by one pixel (up, down, left, right), in the graph; 5x the inference work "
                             "(default: off)")


def _add_evaluate_parser(commands) -> None:
    p = commands.add_parser("evaluate", help="evaluate a checkpoint on the MNIST test set",
                            description="Restore a checkpoint in a fresh graph and report test metrics.")
    p.add_argument("--checkpoint", type=path_flag, default="SavedModel",
                   help="training folder, epoch folder or checkpoint prefix (default: SavedModel)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="which epoch of a training folder to load (default: best)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--report", type=path_flag, metavar="DIR", help="also write PNG figures into DIR (default: none)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace figures an earlier report wrote in the --report folder, never other files "
                        "(default: off)")
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
                            description="Classify PNG/JPEG/BMP/GIF/TIFF/WebP digit images (files or folders), prepared "
                                        f"like MNIST. Images over {MAX_IMAGE_PIXELS:,} pixels are refused. Every "
                                        "file is reported (a blank one as 'no digit'); the exit status is 1 when "
                                        "any could not be read.")
    p.add_argument("images", type=path_flag, nargs="+",
                   help=f"image files, or folders: their files named {'/'.join(IMAGE_SUFFIXES)} (FIFOs and other "
                        "non-regular files skipped)")
    p.add_argument("--checkpoint", type=path_flag, default="SavedModel", help="training folder (default: SavedModel)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    _add_tta_flag(p)
    _add_precision_flag(p)


def _add_calibrate_parser(commands) -> None:
    from lenet_tf.core.options import MAX_FLAGGED

    p = commands.add_parser("calibrate", help="fit \"I can't read this\" for a trained run",
                            description="Fit the novelty score of lenet_tf.rejection on the run's training digits, "
                                        "choose its threshold on validation digits (MNIST validation, load_digits, "
                                        "pendigits), write rejection.npz beside run.json, and report what it flags "
                                        "of real digits and of synthetic non-digits.")
    p.add_argument("--checkpoint", type=path_flag, default="SavedModel", help="training folder (default: SavedModel)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="which epoch of a training folder to calibrate (default: best)")
    p.add_argument("--max-flagged", type=float, default=MAX_FLAGGED,
                   help=f"share of each real validation set the threshold may flag (default: {MAX_FLAGGED})")
    p.add_argument("--json", action="store_true", help="print the calibration as JSON")
    _add_precision_flag(p)
    _add_data_flags(p)


def _add_export_parser(commands) -> None:
    from lenet_tf.core.options import EXPORT_FORMATS, TFLITE_QUANTIZATIONS

    p = commands.add_parser("export", help="write a TensorFlow SavedModel or a TFLite model for serving",
                            description="Export the best checkpoint as a SavedModel whose serving signature takes "
                                        "raw uint8 [N,28,28] or [N,28,28,1] digits, or as a .tflite model taking "
                                        "uint8 [N,28,28].")
    p.add_argument("--checkpoint", type=path_flag, default="SavedModel",
                   help="training folder, epoch folder or checkpoint prefix (default: SavedModel)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="savedmodel", help="what to write (default: savedmodel)")
    p.add_argument("--quantize", choices=TFLITE_QUANTIZATIONS,
                   help="with --format tflite: none (float32), dynamic (int8 weights) or int8 (int8 weights and "
                        "activations, calibrated on 300 training digits from --data-dir) (default: none)")
    p.add_argument("--out", type=path_flag,
                   help="SavedModel folder or .tflite file to write (default: export/lenet5, or "
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
    source.add_argument("--checkpoint", type=path_flag, default="SavedModel",
                        help="training folder (default: SavedModel)")
    source.add_argument("--saved-model", type=path_flag,
                        help="a SavedModel from `lenet-tf export`, or a TF Serving base folder of "
                        "numbered versions, instead of a checkpoint (default: none)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    _add_tta_flag(p)
    _add_serving_limit_flags(p)
    _add_precision_flag(p)


def _add_serving_limit_flags(p) -> None:
    """TF Serving's batching parameters and the request deadlines of ``serve`` (docs/serving.md)."""
    from lenet_tf.core.options import SECONDS
    from lenet_tf.serving.batching import RANGES
    from lenet_tf.serving.bodies import RANGES as BODY_RANGES
    from lenet_tf.serving.options import ServerOptions

    limits = ServerOptions()
    batching, body, wait = limits.batching, limits.body, RANGES["batch_timeout_micros"].high
    count, rate = BODY_RANGES["max_bytes"].parse, BODY_RANGES["min_rate"].parse

    p.add_argument("--max-batch-size", type=RANGES["max_batch_size"].parse, default=batching.max_batch_size,
                   help=f"digits per model call (default: {batching.max_batch_size})")
    p.add_argument("--batch-timeout-micros", type=RANGES["batch_timeout_micros"].parse,
                   default=batching.batch_timeout_micros,
                   help="how long a queued request waits for more to fill its batch, in microseconds, at most "
                        f"{wait} ({wait / 1e6:g} s) (default: {batching.batch_timeout_micros})")
    p.add_argument("--max-enqueued-batches", type=RANGES["max_enqueued_batches"].parse,
                   default=batching.max_enqueued_batches,
                   help="batches of digits that may wait; requests beyond get 503 "
                        f"(default: {batching.max_enqueued_batches})")
    p.add_argument("--header-timeout", type=SECONDS.parse, default=limits.header_timeout,
                   help=f"seconds for a request's headers to arrive, else 408 (default: {limits.header_timeout:g})")
    p.add_argument("--body-timeout", type=SECONDS.parse, default=body.timeout,
                   help=f"seconds for a request's body to arrive, extended by one second per --body-min-rate "
                        f"bytes received, else 408 (default: {body.timeout:g})")
    p.add_argument("--body-min-rate", type=rate, default=body.min_rate,
                   help=f"bytes per second that extend --body-timeout by one second (default: {body.min_rate:g})")
    p.add_argument("--request-timeout", type=SECONDS.parse, default=limits.request_timeout,
                   help=f"seconds from a complete request to its answer, else 504 "
                        f"(default: {limits.request_timeout:g})")
    p.add_argument("--max-upload-bytes", type=count, default=body.max_bytes,
                   help=f"largest request body, else 413; the default takes a 12-megapixel phone JPEG "
                        f"(default: {body.max_bytes}, {body.max_bytes / 2 ** 20:g} MiB)")
    p.add_argument("--prepare-timeout", type=SECONDS.parse, default=limits.prepare_timeout,
                   help=f"seconds to decode and prepare a request's pictures, else 422 "
                        f"(default: {limits.prepare_timeout:g})")


def _add_benchmark_parser(commands) -> None:
    from lenet_tf.benchmark import flags as benchmark_flags

    p = commands.add_parser("benchmark", help="training/inference images per second vs the alternatives",
                            description=benchmark_flags.DESCRIPTION)
    benchmark_flags.build_parser(p)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``lenet-tf`` with all sub-commands; ``train``'s help shows the defaults of the preset
    that ``argv`` names."""
    # Flags are taken only as spelled in full: an abbreviation (`--pres robust`) would train one preset while the
    # help, which reads the preset off the command line (train.preset_named), showed another's defaults.
    parser = argparse.ArgumentParser(prog="lenet-tf", description="LeNet-5 on MNIST with TensorFlow's graph API.",
                                     allow_abbrev=False)
    parser.add_argument("--debug", action="store_true",
                        help=f"show tracebacks for errors and TensorFlow's own log lines (default: off; "
                             f"{DEBUG_ENV}=1 does the same)")
    commands = parser.add_subparsers(dest="command", required=True,
                                     parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    train_command.add_parser(commands, argv)
    _add_evaluate_parser(commands)
    _add_predict_parser(commands)
    _add_calibrate_parser(commands)
    _add_export_parser(commands)
    _add_serve_parser(commands)
    _add_benchmark_parser(commands)
    return parser


def _run_evaluate(args) -> int:
    if not args.report:
        return _evaluate(args)
    from lenet_tf.runs import lock

    with lock.writing(args.report, what="report folder", remove=True):  # two reports never race on one folder
        return _evaluate(args)


def _evaluate(args) -> int:
    from lenet_tf.data.mnist import preload_mnist

    preload_mnist(args.data_dir, verify=not args.skip_checksum)  # read and check MNIST while TensorFlow imports
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
                                     which=args.which, suite=args.robustness, precision=args.precision,
                                     tta=args.tta, notice=_notice)
        evaluation = result
    else:
        result = run_test_set(args.checkpoint, args.data_dir, verify_checksums=not args.skip_checksum,
                              which=args.which, precision=args.precision, tta=args.tta, notice=_notice)
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

    with TrainedModel(args.checkpoint, precision=args.precision, tta=args.tta) as model, warnings.catch_warnings():
        # PIL warns about pictures it still opens; lenet_tf refuses those (a per-file error) under a lower limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        results = predict_files(args.images, model)
    if not results:
        raise LeNetError(f"no image files found in {' '.join(args.images)}")
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    for result in results:
        note = f"  ({result.note})" if result.note else ""
        shown = result.to_json()  # names in valid Unicode, which any output encoding takes
        if result.error:
            print(f"lenet-tf: error: {printable(shown['error'])}", file=sys.stderr)
        elif args.json:
            pass
        else:
            top3 = ", ".join(f"{digit} {p:.3f}" for digit, p in result.top3)
            if result.digit is None:
                print(f"{printable(shown['file'])}: no digit: {result.reason}  (top-3: {top3}){note}")
                continue
            print(f"{printable(shown['file'])}: {result.digit} (p={result.probability:.3f})  top-3: {top3}{note}")
    return EXIT_ERROR if any(r.error for r in results) else 0


def _run_calibrate(args) -> int:
    from lenet_tf.rejection.calibration import calibrate

    if not 0 <= args.max_flagged < 1:
        raise ConfigError(f"--max-flagged must be in [0, 1), got {args.max_flagged}")
    result = calibrate(args.checkpoint, args.data_dir, verify_checksums=not args.skip_checksum, which=args.which,
                       max_flagged=args.max_flagged)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.format())
    return 0


def _run_export(args) -> int:
    if args.format == "tflite":
        return _run_export_tflite(args)
    if args.quantize not in (None, "none"):
        raise ConfigError(f"--quantize {args.quantize} needs --format tflite")
    from lenet_tf.serving.saved_model import export_saved_model, exported_threshold

    path = export_saved_model(args.checkpoint, args.out or "export/lenet5", overwrite=args.overwrite)
    rejects = exported_threshold(path) is not None
    print(f"SavedModel written to {path} (signatures serving_default: images uint8 [N,28,28], and "
          "predict_images: encoded PNG/JPEG/GIF/BMP/WebP strings [N] -> classes (-1: no digit), probabilities"
          f"{_REJECTION_OUTPUTS if rejects else ''})")
    return 0


_REJECTION_OUTPUTS = ", digits (-1: no digit, or not a digit), novelty"


def _run_export_tflite(args) -> int:
    from lenet_tf.serving.tflite import export_tflite, interpreter

    quantize = args.quantize or "none"
    out = args.out or ("export/lenet5.tflite" if quantize == "none" else f"export/lenet5-{quantize}.tflite")
    path = export_tflite(args.checkpoint, out, quantize, overwrite=args.overwrite, data_dir=args.data_dir,
                         verify_checksums=not args.skip_checksum)
    rejects = any(output["name"] == "novelty" for output in interpreter(path).get_output_details())
    print(f"TFLite model written to {path} ({path.stat().st_size:,} bytes; images uint8 [N,28,28] -> "
          f"probabilities {'uint8 (p = q/256)' if quantize == 'int8' else 'float32'} [N,10]"
          f"{_REJECTION_OUTPUTS if rejects else ''})")
    return 0


def _run_serve(args) -> int:
    from lenet_tf.core.precision import choose

    precision = choose(args.precision)
    try:
        from lenet_tf.serving.server import serve
    except ImportError as err:
        raise LeNetError(f"serving needs {err.name}: pip install 'lenet_tf[serve]'") from None
    from lenet_tf.serving.batching import BatchingOptions
    from lenet_tf.serving.bodies import BodyLimits
    from lenet_tf.serving.options import ServerOptions

    options = ServerOptions(
        BatchingOptions(args.max_batch_size, args.batch_timeout_micros, args.max_enqueued_batches),
        BodyLimits(max_bytes=args.max_upload_bytes, timeout=args.body_timeout, min_rate=args.body_min_rate),
        header_timeout=args.header_timeout, request_timeout=args.request_timeout,
        prepare_timeout=args.prepare_timeout)
    serve(args.checkpoint, args.saved_model, args.host, args.port,
          ready=lambda url: print(f"serving on {url} in {precision.used} (Ctrl-C stops)", file=sys.stderr,
                                  flush=True), tta=args.tta, options=options, precision=args.precision)
    return 0


def _run_benchmark(args) -> int:
    from lenet_tf.data.mnist import preload_mnist

    if not args.worker:
        preload_mnist(args.data_dir)  # read and check MNIST while TensorFlow imports
    from lenet_tf.benchmark.throughput import run_and_print

    return run_and_print(args)


_COMMANDS = {"train": lambda args: train_command.run(args), "evaluate": _run_evaluate, "predict": _run_predict,
             "calibrate": _run_calibrate, "export": _run_export,
             "serve": _run_serve, "benchmark": _run_benchmark}


def _notice(message: str) -> None:
    print(f"lenet-tf: {printable(message)}", file=sys.stderr, flush=True)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lenet-tf``; returns the exit status."""
    # At exit the garbage collector would walk every object TensorFlow made (1-2 s); frozen objects it skips.
    atexit.register(gc.freeze)
    args = build_parser(argv).parse_args(argv)  # without importing TensorFlow, so --help and flag errors are instant
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # TensorFlow's own log lines too (lenet_tf.core.quiet); subprocesses inherit it
    args.debug = debugging()  # and LENET_TF_DEBUG=1 asks for the tracebacks as --debug does
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # SIGTERM stops training like Ctrl-C
    # run.json's timing counts from the process's start for `lenet-tf ...`, from this call for main([...]).
    stdout = sys.stdout
    if stdout is not None:  # None: the process started with its output closed (`>&-`), and print() writes nothing
        sys.stdout = _Output(stdout)
    try:
        with timing.command(timing.STARTED if argv is None else None):
            return _run_command(args)
    finally:
        sys.stdout = stdout


class _OutputClosed(Exception):
    """Whoever read the command's output has gone (``lenet-tf predict … | head -1``)."""


class _Output:
    """``sys.stdout`` while a command runs: a closed pipe becomes :class:`_OutputClosed` and any other failure
    to write it (a full disk) an :class:`OutputError`, so that neither is taken for an error of the command's
    own files."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._writing(self._stream.write, text)

    def flush(self) -> None:
        self._writing(self._stream.flush)

    def _writing(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise _OutputClosed from None
        except OSError as err:
            raise OutputError(f"cannot write the output: {describe_os_error(err)}") from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _flush_output() -> None:
    """Writes what the command's output still buffers, so that a failure to write it is the command's, not the
    interpreter's at exit."""
    if sys.stdout is not None:
        sys.stdout.flush()


def _settle_output() -> None:
    """For a command ending with an error or an interruption of its own: writes what its output still buffers,
    or, when that fails too, drops it."""
    try:
        _flush_output()
    except (_OutputClosed, OutputError, OSError):
        _discard_output()


def _discard_output() -> None:
    """Points file descriptor 1 at /dev/null, so that the output still buffered is dropped at exit instead of
    failing again there (Python's recipe for SIGPIPE: https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no descriptor behind sys.stdout: nothing is flushed to one at exit either
        pass
    finally:
        os.close(devnull)


def _run_command(args) -> int:
    """Runs the parsed command; errors become one line (exit 1), a closed output pipe ends it quietly (exit 1),
    Ctrl-C and SIGTERM exit 130."""
    try:
        if args.command == "train" and not train_command.in_cluster(args):
            from lenet_tf.runs.lock import refuse_if_written

            refuse_if_written(args.out, "training folder")  # a second writer is told at once, before TF loads
        if getattr(args, "precision", None):
            from lenet_tf.core.precision import choose

            choose(args.precision)  # an impossible choice (bf16 on a GPU) is refused at once
        status = _COMMANDS[args.command](args)
        _flush_output()
        return status
    except _OutputClosed:  # quietly, as a Unix tool whose reader closed the pipe
        _discard_output()
        return EXIT_ERROR
    except LeNetError as err:
        _settle_output()
        if args.debug:
            traceback.print_exc()
        lines = str(err).split("\n")  # some errors name one cause per line (a cluster spec's bad entries)
        print("lenet-tf: error: " + "\n".join(map(printable, lines)), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _settle_output()
        print("lenet-tf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
