"""Throughput of lenet_tf against the alternatives, measured in one run (``lenet-tf benchmark``)."""
