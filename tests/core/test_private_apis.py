"""The private parts of TensorFlow and Keras that lenet_tf relies on, where no public API does the same.

requirements.txt (the lock) pins both; these tests say clearly what moved when a new release (or `.ci/latest`,
which installs the newest versions setup.py allows) changes one of them. docs/dependencies.md lists them.
"""

import contextlib
import os

from lenet_tf.core.tf import TF_KERAS_MODULES, graph_control_flow, keras_dirs, tf, tf1

PINNED = "pinned by requirements.txt; see docs/dependencies.md"


def test_tensorflow_s_control_flow_v2_switch_is_still_there_and_still_works():
    """lenet_tf.core.tf.graph_control_flow flips ``tensorflow.python.ops.control_flow_util.ENABLE_CONTROL_FLOW_V2``
    (tf.compat.v1.disable_control_flow_v2 flips it for the whole process; there is no scoped public switch)."""
    from tensorflow.python.ops import control_flow_util

    assert isinstance(getattr(control_flow_util, "ENABLE_CONTROL_FLOW_V2", None), bool), (
        f"TensorFlow {tf.__version__} has no control_flow_util.ENABLE_CONTROL_FLOW_V2 any more: "
        f"lenet_tf.core.tf.graph_control_flow cannot build TF1 loops ({PINNED})")
    kinds = {}
    for v1 in (True, False):
        with tf.Graph().as_default() as graph:
            with graph_control_flow() if v1 else contextlib.nullcontext():
                total = tf.while_loop(lambda i, s: i < 4, lambda i, s: (i + 1, s + i), [0, 0])[1]
            kinds[v1] = {op.type for op in graph.get_operations()}
            with tf1.Session(graph=graph) as session:
                assert session.run(total) == 6
    assert {"Enter", "Exit", "NextIteration"} <= kinds[True], (
        f"TensorFlow {tf.__version__}: graph_control_flow no longer builds TF1 loops (ops {sorted(kinds[True])}); "
        f"the private switch changed meaning ({PINNED})")
    assert "Enter" not in kinds[False] and kinds[False] & {"While", "StatelessWhile"}, "the switch was left off"


def test_the_keras_tensorflow_serves_as_tf_keras_is_where_lenet_tf_points_it():
    """lenet_tf hides Keras while TensorFlow imports (3 s saved), then points tf.keras at Keras's private
    ``_tf_keras`` package itself, as TensorFlow's __init__ would have."""
    folders = keras_dirs()
    assert folders, (f"none of {TF_KERAS_MODULES} exists in the installed Keras: lenet_tf.core.tf can no longer "
                     f"point tf.keras at it ({PINNED})")
    assert all(os.path.isfile(os.path.join(folder, "keras", "__init__.py")) for folder in folders), folders
    # That tf.keras and `import keras` then work: tests/core/test_tf_import.py, in a fresh process.


def test_tflite_s_flatbuffer_schema_and_utils_still_round_trip_a_metadata_entry():
    """lenet_tf.serving.tflite marks its .tflite files with a metadata entry through TensorFlow's
    ``tensorflow.lite.tools.flatbuffer_utils`` and ``tensorflow.lite.python.schema_py_generated`` (the converter has
    no public way to add metadata), and reads it back to recognise its own file before ``--overwrite``."""
    from lenet_tf.serving.tflite import _with_metadata, exported_record

    @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32)])
    def double(x):
        return {"y": 2.0 * x}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()], double)
    flatbuffer = converter.convert()
    assert exported_record(flatbuffer) is None, "a file without the entry was taken for one of ours"
    marked = _with_metadata(flatbuffer, {"checkpoint": "x", "epoch": 3})
    assert exported_record(marked) == {"checkpoint": "x", "epoch": 3}, (
        f"TensorFlow {tf.__version__}: the TFLite flatbuffer schema or flatbuffer_utils changed ({PINNED})")
