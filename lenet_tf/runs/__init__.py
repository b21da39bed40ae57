"""The training folder on disk: crash-safe checkpoints and the run record (``run.json``) that points at
them."""
