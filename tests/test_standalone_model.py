"""`LeNet5` is a standalone module: importing it, building its graph and restoring a training folder load neither
the run-folder machinery (records, locks) nor the native-op build; the trainer injects those kernels."""

import json
import subprocess
import sys

CHECK = """
import json, sys
import lenet_tf.model
after_import = sorted(sys.modules)
from lenet_tf.core.tf import tf, tf1
from lenet_tf.model import LeNet5
with tf.Graph().as_default():
    net = LeNet5()
    net(tf1.placeholder(tf.float32, [None, 32, 32, 1]))
    with tf1.Session() as session:
        net.restore(session, sys.argv[1])
print(json.dumps({"import": after_import, "restore": sorted(sys.modules)}))
"""

# Run folders (records, locks), the native-op build and its compiler processes, the trainer.
HEAVY = ("lenet_tf.runs", "lenet_tf.core.native_ops", "lenet_tf.core.processes", "lenet_tf.training")


def test_importing_building_and_restoring_lenet5_loads_no_run_or_native_module(synthetic_model_dir):
    done = subprocess.run([sys.executable, "-P", "-c", CHECK, str(synthetic_model_dir)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "lenet_tf.model" in loaded["import"]
    for stage, modules in loaded.items():
        heavy = [name for name in modules if name.startswith(HEAVY)]
        assert heavy == [], f"{stage} of LeNet5 loaded {heavy}"
