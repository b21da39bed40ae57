"""Reading the JSON files lenet_tf writes (run records, export markers, lock lines, caches), which a user may edit."""

import json


def loads(text: bytes | str):
    """``json.loads``, except that a document nested too deeply for Python's parser is a ValueError, as any other
    malformed JSON is (``json`` raises RecursionError), so that readers handle it as a malformed file."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
