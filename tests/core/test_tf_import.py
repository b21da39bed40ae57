"""lenet_tf imports TensorFlow without its eager Keras import, and Keras still works afterwards."""

import subprocess
import sys

SCRIPT = """
import sys
from lenet_tf.core.tf import tf
assert "keras" not in sys.modules, "Keras was imported with TensorFlow"
from tensorflow.keras import layers                     # the module path TensorFlow normally sets up
import keras
model = keras.Sequential([keras.Input((3,)), tf.keras.layers.Dense(2)])
assert model(tf.ones([1, 3])).shape == (1, 2) and layers.Dense is keras.layers.Dense
print("ok")
"""


def test_keras_loads_on_first_use_after_lenet_tf_imported_tensorflow():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
