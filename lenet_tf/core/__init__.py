"""The ground floor every other part stands on: errors, the one TensorFlow import, numeric precision,
option names and ranges, output writing, timing. Nothing here imports another lenet_tf floor."""
