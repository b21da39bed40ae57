"""Long fuzz run of what reads untrusted input: picture decoding (as ``lenet-tf predict`` and ``/predict`` read a
file) and the TF Serving body parser, on byte- and value-mutated inputs from tests/fuzzing.py.

Every input must give a result or our own error (DataError / RequestError 4xx / BadRequest); anything else is
counted by exception type with its first input saved under --out. Prints the counts and exits 1 if anything escaped.
Run it alone: flock /tmp/lenet_heavy.lock python benchmarks/fuzz_inputs.py --minutes 3
Usage: python benchmarks/fuzz_inputs.py [--minutes 1] [--seed 0] [--out fuzz-escapes]
"""

import argparse
import io
import json
import random
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzzing import mutated_body, mutated_picture  # noqa: E402

from lenet_tf.core.errors import DataError  # noqa: E402
from lenet_tf.data.images import decode_picture, mnist_or_blank  # noqa: E402
from lenet_tf.serving.bodies import RequestError  # noqa: E402
from lenet_tf.serving.tf_serving import BadRequest, parse_predict_request  # noqa: E402
from lenet_tf.serving.uploads import image_upload  # noqa: E402


def picture_target(rng: random.Random) -> tuple[str, bytes]:
    name, data = mutated_picture(rng)
    try:
        mnist_or_blank(decode_picture(io.BytesIO(data), name).gray, name)
        outcome = "read"
    except DataError:
        outcome = "refused"
    try:
        image_upload(data)
    except RequestError as err:
        if not 400 <= err.status < 500:
            raise AssertionError(f"status {err.status}") from None
    return outcome, data


def body_target(rng: random.Random) -> tuple[str, bytes]:
    body = mutated_body(rng)
    try:
        parse_predict_request(body)
        return "parsed", body
    except BadRequest:
        return "refused", body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="run time, split between the targets (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations (default: 0)")
    parser.add_argument("--out", default="fuzz-escapes", help="folder for the inputs that escaped (default: "
                                                               "fuzz-escapes)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # PIL's warnings about damaged files it still reads
    report = {}
    for name, target in (("pictures", picture_target), ("tf_serving_bodies", body_target)):
        rng, counts, escapes = random.Random(args.seed), Counter(), Counter()
        stop = time.monotonic() + args.minutes * 30
        while time.monotonic() < stop:
            state = rng.getstate()
            try:
                outcome, _ = target(rng)
                counts[outcome] += 1
            except Exception as err:  # noqa: BLE001 - what the run is looking for
                kind = f"{type(err).__name__}: {str(err)[:80]}"
                if not escapes[kind]:
                    rng.setstate(state)
                    folder = Path(args.out)
                    folder.mkdir(exist_ok=True)
                    data = mutated_picture(rng)[1] if name == "pictures" else mutated_body(rng)
                    (folder / f"{name}-{sum(escapes.values())}.bin").write_bytes(data)
                escapes[kind] += 1
        report[name] = {"inputs": sum(counts.values()) + sum(escapes.values()), **counts,
                        "escaped": sum(escapes.values()), "escapes": dict(escapes)}
        print(f"{name}: {report[name]['inputs']:,} inputs, {dict(counts)}, {sum(escapes.values())} escaped"
              + "".join(f"\n  {n} x {kind}" for kind, n in escapes.most_common()), flush=True)
    print(json.dumps(report))
    return 1 if any(r["escaped"] for r in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
