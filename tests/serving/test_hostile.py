"""Requests and files meant to crash, stall or fool the server and `lenet-tf predict` (issue 31): each gets a 4xx
JSON answer or a per-file error, the connection is closed in time, and nothing reaches the server's log."""

import io
import json
import random
import socket
import threading
import time

import numpy as np
import pytest
from fuzzing import mutated_picture
from PIL import Image, ImageDraw

fastapi = pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
httpx = pytest.importorskip("httpx")
from asgi import asgi_client  # noqa: E402

from lenet_tf.serving.batching import BatchingOptions  # noqa: E402
from lenet_tf.serving.bodies import MAX_UPLOAD_BYTES  # noqa: E402
from lenet_tf.serving.server import ServedModel, ServerOptions, create_app  # noqa: E402

FLAT = ServedModel(lambda digits: np.full((len(digits), 10), 0.1, np.float32), "test")


def exchange(address, request: bytes, then: bytes = b"", timeout: float = 10) -> tuple[bytes, float]:
    """Sends ``request``, reads the answer's first bytes, sends ``then``, and reads until the server closes the
    connection; returns the answer and the seconds from the first answer to the close."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(request)
        answer = sock.recv(65536)
        answered = time.monotonic()
        try:
            sock.sendall(then)
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer, time.monotonic() - answered


def test_a_body_left_unread_closes_the_connection_after_the_answer(live):
    # The issue's client: GET /health declaring a body, reading the answer, then trickling one byte.
    answer, seconds = exchange(live.address, b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", b"x")
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
    assert seconds < live.header_timeout, "closed within the header deadline"
    refused, seconds = exchange(live.address, b"POST /v1/models/other:predict HTTP/1.1\r\nHost: x\r\n"
                                              b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{", b"x")
    assert refused.startswith(b"HTTP/1.1 404") and seconds < live.header_timeout
    kept = httpx.Client(base_url=live.url)  # a body read to its end keeps the connection alive, as before
    first = kept.post("/v1/models/lenet5:predict", json={"instances": [[[0] * 28] * 28]})
    assert first.status_code == 200 and first.headers.get("connection") != "close"
    assert first.json()["predictions"][0]["classes"] == -1  # a digit with no ink
    kept.close()


def test_the_issues_requests_get_4xx_json_and_leave_no_traceback(live):
    before = len(live.log)
    huge_strings = json.dumps({"instances": ["a" * 100_000] + [""] * 150_000}).encode()
    answers = [httpx.post(live.url + "/v1/models/lenet5:predict", content=huge_strings, timeout=30),
               httpx.post(live.url + "/v1/models/lenet5:predict", json={"instances": [[["7"] * 28] * 28]}),
               httpx.post(live.url + "/predict", content=b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n",
                          headers={"Content-Type": "application/postscript"}),
               httpx.post(live.url + "/predict", content=b"abc",  # python_multipart logs this one unless told not to
                          headers={"Content-Type": "multipart/form-data; boundary=xyz"})]
    rng = random.Random(0)
    for _ in range(60):
        _, picture = mutated_picture(rng)
        answers.append(httpx.post(live.url + "/predict", content=picture, headers={"Content-Type": "image/png"}))
    assert all(a.status_code < 500 for a in answers), [(a.status_code, a.text) for a in answers if a.status_code >= 500]
    assert answers[0].status_code == 400 and "must have shape" in answers[0].json()["error"]
    assert answers[2].status_code == 415 and "unknown format" in answers[2].json()["detail"]
    assert answers[3].status_code == 400 and "Expected boundary character" in answers[3].json()["detail"]
    assert httpx.get(live.url + "/health").json()["status"] == "ok"
    time.sleep(0.2)
    assert live.log[before:] == []


@pytest.mark.parametrize("request_bytes", [
    b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",  # an unknown method
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",  # a bad chunk size
    b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n",
    bytes(range(256)),
])
def test_bytes_that_are_no_http_request_get_a_json_400_and_leave_the_log_empty(live, request_bytes):
    before = len(live.log)
    answer, _ = exchange(live.address, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower(), answer[:300]
    assert json.loads(body) == {"error": "not a valid HTTP/1.1 request"}
    assert httpx.get(live.url + "/health").json()["status"] == "ok"
    time.sleep(0.2)
    assert live.log[before:] == []


@pytest.mark.parametrize("method, path, allow", [
    ("GET", "/predict", "POST"), ("PUT", "/v1/models/lenet5:predict", "POST"),
    ("DELETE", "/v1/models/lenet5/versions/1:predict", "POST"), ("POST", "/health", "GET"),
    ("POST", "/v1/models/lenet5", "GET"), ("POST", "/v1/models/lenet5/versions/1/metadata", "GET"),
    ("PATCH", "/v1/models/lenet5/metadata", "GET"), ("PUT", "/v1/models/lenet5", "GET"),
])
def test_undeclared_methods_get_405_and_allow(method, path, allow):
    """With TF Serving's ``{"error": …}`` under ``/v1/`` (FastAPI's own 405s said ``{"detail": …}`` there)."""
    response = asgi_client(create_app(FLAT)).request(method, path)
    assert response.status_code == 405 and allow in response.headers["allow"], response.text
    assert response.json() == {"error" if path.startswith("/v1/") else "detail": "Method Not Allowed"}


@pytest.mark.parametrize("path", ["/health", "/", "/v1/models/lenet5", "/v1/models/lenet5/versions/1/metadata",
                                  "/openapi.json"])
def test_head_is_answered_wherever_get_is_with_the_same_headers_and_no_body(path):
    client = asgi_client(create_app(FLAT))
    get, head = client.get(path), client.head(path)
    assert get.status_code == head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"]


def test_a_lone_surrogate_echoed_in_a_refusal_is_written_as_its_escape(live):
    """JSON may spell a lone surrogate, which UTF-8 cannot encode: the refusal echoing it was a 500 and a traceback."""
    before = len(live.log)
    response = httpx.post(live.url + "/v1/models/lenet5:predict", headers={"Content-Type": "application/json"},
                          content=rb'{"signature_name": "\ud800", "instances": [1]}')
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    assert response.json() == {"error": r'Serving signature name: "\ud800" not found in signature def'}
    time.sleep(0.2)
    assert live.log[before:] == []


def test_a_refusal_answered_by_fastapi_encodes_a_lone_surrogate_too():
    """No server uvicorn runs on puts one in a path, but an ASGI server may: FastAPI's JSONResponse failed on it."""
    import asyncio

    sent = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/v1/\ud800", "raw_path": b"/v1/%ED%A0%80", "root_path": "", "query_string": b"",
             "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(create_app(FLAT)(scope, receive, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"].startswith(r"Malformed request: GET /v1/\ud800 (")


@pytest.mark.parametrize("pixels, message", [
    ([[1, 2], [3]], "pixels must be a 28x28 array: not a dense tensor (nested lists of unequal lengths)"),
    ([[0] * 28] * 27 + [[0] * 27], "pixels must be a 28x28 array: not a dense tensor (nested lists of unequal "
                                   "lengths)"),  # 28x28 down its first items
    ([[None] * 28] * 28, "pixels: its values must be numbers, got nulls"),
    ([[None] * 27 + ["7"]] + [[0] * 28] * 27, "pixels: its values must be numbers, got nulls and strings"),
], ids=["ragged", "ragged-last-row", "nulls", "nulls-and-strings"])
def test_json_pixels_are_refused_for_what_is_wrong_with_them(pixels, message):
    """A ragged array was said to have the shape of its first rows, nulls to be values of mixed types."""
    response = asgi_client(create_app(FLAT)).post("/predict", json={"pixels": pixels})
    assert response.status_code == 422 and response.json() == {"detail": message}


def test_a_truncated_multipart_upload_is_a_bad_body_not_one_without_its_file():
    """python_multipart reads a body cut before its closing boundary as a whole one, its last part left out."""
    picture = io.BytesIO()
    Image.new("L", (28, 28), 255).save(picture, "PNG")
    client = asgi_client(create_app(FLAT))
    form = client.build_request("POST", "/predict", files={"file": ("a.png", picture.getvalue(), "image/png")})
    whole, headers = form.read(), {"Content-Type": form.headers["content-type"]}
    assert client.post("/predict", content=whole, headers=headers).status_code == 200
    for cut in (whole[:-10], whole[:len(whole) // 2]):
        response = client.post("/predict", content=cut, headers=headers)
        assert response.status_code == 400
        assert response.json() == {"detail": "bad multipart body (truncated: it ends before its closing boundary)"}
    unnamed = client.post("/predict", content=whole, headers={"Content-Type": "multipart/form-data; xboundary=1"})
    assert unnamed.status_code == 400 and unnamed.json() == {"detail": "bad multipart body (No boundary given)"}


def test_two_file_fields_in_one_upload_are_refused_not_one_of_them_read():
    one = io.BytesIO()
    Image.new("L", (28, 28), 255).save(one, "PNG")
    response = asgi_client(create_app(FLAT)).post("/predict", files=[("file", ("a.png", one.getvalue())),
                                                                     ("file", ("b.png", one.getvalue()))])
    assert response.status_code == 400
    assert response.json() == {"detail": "multipart upload has more than one field named 'file': send one file per "
                                         "request"}


@pytest.mark.parametrize("path, key", [("/predict", "detail"), ("/v1/models/lenet5:predict", "error")])
def test_a_compressed_body_is_refused_with_415_not_read_as_garbage(path, key):
    import gzip

    picture = io.BytesIO()
    Image.new("L", (28, 28), 255).save(picture, "PNG")
    client = asgi_client(create_app(FLAT))
    response = client.post(path, content=gzip.compress(picture.getvalue()),
                           headers={"Content-Type": "image/png", "Content-Encoding": "gzip"})
    assert response.status_code == 415
    assert response.json() == {key: "Content-Encoding 'gzip' is not supported: send the body uncompressed"}
    plain = client.post("/predict", content=picture.getvalue(), headers={"Content-Encoding": "identity"})
    assert plain.status_code == 200 and plain.json()["digit"] is None  # a blank picture, read


def test_health_reports_a_dead_batching_thread(monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the thread's death is the test's point

    def dying(digits):
        raise SystemExit("the model's thread ends")  # not an Exception: the batcher cannot hand it on

    client = asgi_client(create_app(ServedModel(dying, "test")))
    assert client.get("/health").status_code == 200
    dead = client.post("/v1/models/lenet5:predict", json={"instances": [[[0] * 28] * 28]})
    assert dead.status_code == 503 and "stopped" in dead.json()["error"]
    deadline = time.monotonic() + 5
    while client.get("/health").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    after = client.post("/v1/models/lenet5:predict", json={"instances": [[[0] * 28] * 28]})
    assert after.status_code == 503 and "stopped" in after.json()["error"]


def test_picture_preparation_has_a_deadline(monkeypatch):
    import lenet_tf.serving.server as server

    release = threading.Event()
    def slow_upload(body):
        release.wait(10)
        return np.zeros((28, 28), np.uint8), None

    monkeypatch.setattr(server, "image_upload", slow_upload)
    client = asgi_client(create_app(FLAT, ServerOptions(prepare_timeout=0.3, prepare_threads=1)))
    began = time.monotonic()
    slow = {}
    thread = threading.Thread(target=lambda: slow.update(r=client.post("/predict", content=b"x")))
    thread.start()
    time.sleep(0.1)
    queued = client.post("/predict", content=b"y")  # the one thread is busy with the first picture
    thread.join(10)
    release.set()
    assert slow["r"].status_code == 422 and "took over 0.3 s" in slow["r"].json()["detail"]
    assert queued.status_code == 503 and queued.headers["retry-after"] == "1"
    assert time.monotonic() - began < 3


def phone_jpeg() -> bytes:
    """A 12-megapixel (4000x3000) photo of a 7 on grainy paper, as a phone writes it (quality 92)."""
    rng = np.random.default_rng(0)
    image = Image.new("L", (4000, 3000), 200)
    ImageDraw.Draw(image).line([(1500, 800), (2500, 800), (1800, 2300)], fill=40, width=120)
    grain = rng.normal(0, 14, (3000, 4000)).astype(np.float32)
    noisy = Image.fromarray(np.clip(np.asarray(image, np.float32) + grain, 0, 255).astype(np.uint8)).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def test_a_12_megapixel_phone_jpeg_is_taken_by_default():
    picture = phone_jpeg()
    assert 2 * 2 ** 20 < len(picture) <= MAX_UPLOAD_BYTES
    began = time.monotonic()
    response = asgi_client(create_app(FLAT)).post("/predict", content=picture, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert np.array(response.json()["input"]).max() == 255 and time.monotonic() - began < 5
    small = asgi_client(create_app(FLAT, ServerOptions(body=type(ServerOptions().body)(max_bytes=2 ** 20))))
    assert small.post("/predict", content=picture).status_code == 413


def test_a_blank_picture_is_a_result_without_a_digit_in_both_apis():
    import base64

    blank = io.BytesIO()
    Image.new("L", (40, 40), 255).save(blank, format="PNG")
    client = asgi_client(create_app(FLAT, ServerOptions(BatchingOptions(max_batch_size=4))))
    result = client.post("/predict", content=blank.getvalue(), headers={"Content-Type": "image/png"}).json()
    assert result["digit"] is None and result["reason"] == "blank image (no digit found)"
    assert len(result["probabilities"]) == 10 and result["probability"] is None
    served = client.post("/v1/models/lenet5:predict", json={
        "signature_name": "predict_images", "instances": [{"b64": base64.b64encode(blank.getvalue()).decode()}]})
    assert served.json()["predictions"][0]["classes"] == -1
