"""Evaluation: the test set, the robustness suites (digits not from MNIST's scanner), and their
figures."""

from lenet_tf.core.lazy import lazy_exports

__all__ = ["evaluate_robustness", "run_test_set"]
__getattr__ = lazy_exports(__name__, {"run_test_set": "evaluate", "evaluate_robustness": "evaluate"})
