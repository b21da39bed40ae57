"""Moved to :mod:`lenet_tf.rejection.calibration` (beside the head it fits, so that training can call it); these
names stay importable from here."""

from lenet_tf.rejection.calibration import Calibration, calibrate, calibrate_model  # noqa: F401
