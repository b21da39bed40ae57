"""The one place that relies on uvicorn's private protocol class, checked by name; and the decoding path's freedom
from process-wide locks and fd-2 redirection."""

import io
import os
import threading

import numpy as np
from PIL import Image

from lenet_tf.core.errors import DataError
from lenet_tf.data.images import decode_picture


def test_uvicorn_still_has_the_callbacks_the_header_deadline_overrides():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from lenet_tf.serving.connections import header_deadline_protocol

    overridden = ("connection_made", "on_message_begin", "on_headers_complete", "connection_lost",
                  "send_400_response")
    missing = [name for name in overridden if not callable(getattr(HttpToolsProtocol, name, None))]
    assert not missing, (f"uvicorn's HttpToolsProtocol no longer has {missing}: lenet_tf/serving/connections.py's "
                         "header deadline must be adapted to this uvicorn")
    protocol = header_deadline_protocol(1.0)
    assert issubclass(protocol, HttpToolsProtocol) and all(name in vars(protocol) for name in overridden)
    names = HttpToolsProtocol.__init__.__code__.co_names + HttpToolsProtocol.connection_made.__code__.co_names
    for attribute in ("loop", "transport"):  # set by uvicorn's __init__/connection_made, read by the deadline
        assert attribute in names, (f"uvicorn's HttpToolsProtocol no longer sets self.{attribute}: adapt "
                                    "lenet_tf/serving/connections.py")


def damaged_tiffs() -> list[bytes]:
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    pictures = []
    for compression in ("jpeg", "tiff_lzw", "packbits", "tiff_deflate"):
        buffer = io.BytesIO()
        Image.fromarray(digit).resize((56, 56)).save(buffer, format="TIFF", compression=compression)
        pictures.append(buffer.getvalue()[:-10])
    return pictures


def test_threads_decode_damaged_tiffs_without_touching_file_descriptor_2(monkeypatch):
    redirections, dup2 = [], os.dup2

    def recorded(*args, **kwargs):  # pytest's own output capture calls it from the main thread
        if threading.current_thread() is not threading.main_thread():
            redirections.append(args)
        return dup2(*args, **kwargs)

    monkeypatch.setattr(os, "dup2", recorded)
    errors, pictures = [], damaged_tiffs()

    def decode_all():
        for k, data in enumerate(pictures * 5):
            try:
                decode_picture(io.BytesIO(data), f"tiff {k}")
            except DataError as err:
                errors.append(str(err))

    threads = [threading.Thread(target=decode_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 4 * 5 * len(pictures) and all("not a readable image" in e for e in errors)
    assert redirections == []


def test_a_tiff_of_many_chained_pages_is_not_walked_to_its_end():
    import time

    page = Image.new("L", (4, 4), 255)
    buffer = io.BytesIO()
    page.save(buffer, format="TIFF", save_all=True, append_images=[page] * 400)
    began = time.monotonic()
    picture = decode_picture(io.BytesIO(buffer.getvalue()), "pages.tif")
    assert picture.note == "over 100 frames: read the first" and time.monotonic() - began < 1.0
