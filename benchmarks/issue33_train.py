"""Train a preset with model options the command line does not have yet (a measuring harness, not a recipe).

    python benchmarks/issue33_train.py MODEL_JSON -- TRAIN_FLAGS...

``MODEL_JSON`` (e.g. '{"clean_inputs": true}') is merged into every preset's ``model`` before ``lenet-tf train``
parses ``TRAIN_FLAGS``; ``time`` of the whole process is printed as ``wall_seconds``.
"""

import json
import sys
import time

started = time.time()
from lenet_tf.training import presets  # noqa: E402

extra = json.loads(sys.argv[1])
for values in presets.PRESETS.values():
    values["model"] = {**values.get("model", {}), **extra}
from lenet_tf.cli.commands import main  # noqa: E402

status = main(sys.argv[3:])
print(json.dumps({"wall_seconds": time.time() - started}), file=sys.stderr)
sys.exit(status)
