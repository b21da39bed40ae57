"""Evaluating a small graph in a test: build it on placeholders shaped like the feeds, run it once."""

import numpy as np

from lenet_tf.core.tf import tf, tf1


def run(build, *feeds):
    """Builds ``build(*placeholders)`` in a fresh graph and evaluates it on ``feeds``."""
    with tf.Graph().as_default() as graph:
        placeholders = [tf1.placeholder(tf.as_dtype(np.asarray(f).dtype), np.shape(f)) for f in feeds]
        output = build(*placeholders)
        with tf1.Session(graph=graph) as session:
            return session.run(output, dict(zip(placeholders, feeds)))
