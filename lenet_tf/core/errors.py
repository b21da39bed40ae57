"""Errors that the command line reports as one clear line instead of a traceback."""


class LeNetError(Exception):
    """Base class of every error caused by the user's input, data or files."""


class DataError(LeNetError):
    """A data file is missing, corrupt or not what it claims to be."""


class CheckpointError(LeNetError):
    """A checkpoint directory is missing, partial or from another model."""


class ConfigError(LeNetError):
    """An argument or configuration value is out of range."""


class TrainingError(LeNetError):
    """Training cannot continue (for example the loss became NaN)."""


class OutputError(LeNetError):
    """An output file or folder cannot be written, or writing it would replace something that is not ours."""


def printable(text: str) -> str:
    """``text`` with its control characters (newline, tab, a terminal's escape sequences…) written as escapes
    (``\\n``, ``\\x1b``): a file name holding them keeps a message on one line and cannot drive the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
