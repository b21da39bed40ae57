"""``python -m lenet_tf`` runs the ``lenet-tf`` command."""

import sys

from lenet_tf.cli.commands import main

sys.exit(main())
