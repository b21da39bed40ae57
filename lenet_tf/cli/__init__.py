"""The ``lenet-tf`` command line: it parses flags and calls the library (never the reverse)."""

from lenet_tf.cli.commands import main

__all__ = ["main"]
