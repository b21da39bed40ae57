"""The web demo: the HTTP API through FastAPI's test client, its limits, the server process, and the drawing page
in a real headless Chromium."""

import asyncio
import contextlib
import io
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from images import letter_image, png_header_only
from PIL import Image

fastapi = pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from asgi import asgi_client  # noqa: E402

from lenet_tf.cli.commands import main  # noqa: E402
from lenet_tf.data.images import to_mnist  # noqa: E402
from lenet_tf.serving.batching import BatchingOptions  # noqa: E402
from lenet_tf.serving.bodies import BodyLimits  # noqa: E402
from lenet_tf.serving.server import (MAX_UPLOAD_BYTES, ServedModel, ServerOptions, checkpoint_model,  # noqa: E402
                                     create_app)

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
LONG_INTEGER = b"9" * 400


@pytest.fixture(scope="module")
def client(real_model_dir):
    return asgi_client(create_app(checkpoint_model(real_model_dir[0])))


def png_bytes(array: np.ndarray, invert=True, size=(84, 84)) -> bytes:
    image = Image.fromarray(255 - array if invert else array).resize(size, Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_and_page_and_openapi(client, real_model_dir):
    health = client.get("/health").json()
    assert health == {"status": "ok", "model": "lenet5", "version": 1, "source": "checkpoint",
                      "epoch": real_model_dir[1].best_epoch}
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="pad"' in page.text and "cdn" not in page.text.lower()
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_rendered_mnist_digits_are_predicted(client, real_model_dir, real_mnist):
    from lenet_tf.trained import TrainedModel

    with TrainedModel(real_model_dir[0]) as model:
        original = model.predict(real_mnist.test_images[:40])
    chosen = [i for i in range(40) if original.classes[i] == real_mnist.test_labels[i]
              and original.probabilities[i].max() > 0.99][:12]
    for n, i in enumerate(chosen):
        body = png_bytes(real_mnist.test_images[i])
        if n % 2:
            response = client.post("/predict", files={"file": ("digit.png", body, "image/png")})
        else:
            response = client.post("/predict", content=body, headers={"Content-Type": "image/png"})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["digit"] == real_mnist.test_labels[i]
        assert np.array(result["input"]).shape == (28, 28) and len(result["probabilities"]) == 10
        assert sum(result["probabilities"]) == pytest.approx(1, abs=1e-4)
    pixels = {"pixels": real_mnist.test_images[chosen[0]].tolist()}
    assert client.post("/predict", json=pixels).json()["digit"] == real_mnist.test_labels[chosen[0]]


@pytest.mark.parametrize("kwargs, status, message", [
    ({"content": b"definitely not a picture", "headers": {"Content-Type": "image/png"}}, 415,
     "not a readable image (unknown format"),
    ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty upload"),
    ({"json": {"pixels": [[0, 1], [2, 3]]}}, 422, "28x28"),
    ({"json": {"pixel": []}}, 422, "expected JSON"),
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422, "expected JSON"),
    ({"files": {"other": ("x.png", b"abc", "image/png")}}, 400, "field named 'file'"),
    ({"content": b"0" * (MAX_UPLOAD_BYTES + 1), "headers": {"Content-Type": "image/png"}}, 413, "too large"),
    ({"content": b'{"pixels": [[' + LONG_INTEGER + b"]]}", "headers": {"Content-Type": "application/json"}}, 422,
     "28x28 array, got shape [1, 1]"),
    ({"json": {"pixels": [["7"] * 28] * 28}}, 422, "pixels: its values must be numbers, got strings"),
    ({"content": b'{"pixels": ' + DEEP_JSON + b"}", "headers": {"Content-Type": "application/json"}}, 422,
     "expected JSON"),
    ({"content": png_header_only(20000, 20000), "headers": {"Content-Type": "image/png"}}, 413, "image too large"),
    ({"files": {"file": ("x.png", png_header_only(5000, 5000), "image/png")}}, 413, "5000x5000 pixels"),
])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(client, kwargs, status, message):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status and message in response.json()["detail"]
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("method, path", [
    ("post", "/v1/models/lenet5/versions/%C2%B2:predict"),  # a Unicode digit: str.isdigit() says yes
    ("get", "/v1/models/lenet5/versions/%C2%B2"),
    ("get", "/v1/models/lenet5/versions/%C2%B2/metadata"),
    ("post", "/v1/models/lenet5/versions/" + "9" * 5000 + ":predict"),  # beyond int()'s 4300 digits
    ("get", "/v1/models/lenet5/versions/" + "9" * 5000),
    ("get", "/v1/models/lenet5/versions/-1/metadata"),
])
def test_a_version_that_is_not_a_number_gets_400_json(client, method, path):
    response = getattr(client, method)(path, **({"json": {"instances": [[[0] * 28] * 28]}} if method == "post"
                                                  else {}))
    assert response.status_code == 400 and "is not a number" in response.json()["error"]
    assert len(response.json()["error"]) < 120


DIGIT_ONE = np.pad(np.full((10, 4), 255), ((9, 9), (12, 12)))


@pytest.mark.parametrize("raw, message", [
    (b'{"pixels": ' + str((DIGIT_ONE * 1.2e36).tolist()).encode() + b"}", "grey levels 0..255, got 0..3.06e+38"),
    (b'{"pixels": ' + str((DIGIT_ONE * -1.2e36).tolist()).encode() + b"}", "got -3.06e+38.."),
    (b'{"pixels": ' + str(DIGIT_ONE.tolist()).replace("255", "255.0000001", 1).encode() + b"}",
     "got 0..255.0000001"),  # not rounded to "0..255", which would contradict the message
    (b'{"pixels": ' + str(DIGIT_ONE.tolist()).replace("255", "NaN", 1).encode() + b"}",
     "finite numbers: NaN or Infinity found"),
], ids=["3e38", "-3e38", "just-over-255", "NaN"])
def test_pixels_out_of_range_or_not_finite_get_400_with_their_own_message(client, raw, message):
    response = client.post("/predict", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and message in response.json()["detail"]


def test_media_types_are_case_insensitive(client):
    import json as json_module

    digit = json_module.dumps({"pixels": DIGIT_ONE.tolist()})
    expected = client.post("/predict", content=digit, headers={"Content-Type": "application/json"}).json()
    response = client.post("/predict", content=digit, headers={"Content-Type": "Application/JSON; Charset=UTF-8"})
    assert response.status_code == 200 and response.json() == expected
    body = png_bytes(DIGIT_ONE.astype(np.uint8))
    expected = client.post("/predict", files={"file": ("d.png", body, "image/png")}).json()
    form = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + body + b"\r\n--XyZ--\r\n")
    response = client.post("/predict", content=form, headers={"Content-Type": "Multipart/Form-Data; boundary=XyZ"})
    assert response.status_code == 200 and response.json() == expected


def test_unreadable_pictures_say_why_as_the_cli_does(client, tmp_path):
    from lenet_tf.core.errors import DataError
    from lenet_tf.data.images import load_grayscale

    whole = png_bytes(DIGIT_ONE.astype(np.uint8))
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><path d="M14 4v20"/></svg>'
    for name, data, reason in [("cut.png", whole[:len(whole) * 2 // 3], "image file is truncated"),
                               ("one.svg", svg, "unknown format")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as cli_error:
            load_grayscale(tmp_path / name)
        response = client.post("/predict", content=data, headers={"Content-Type": "image/png"})
        detail = response.json()["detail"]
        assert response.status_code == 415 and reason in detail and "<_io" not in detail
        assert detail.removeprefix("upload: ") == str(cli_error.value).removeprefix(f"{tmp_path / name}: ")


def asgi_post(app, path: str, chunk_bytes: int, chunks: int) -> tuple[int, int]:
    """POSTs a chunked body of ``chunks`` x ``chunk_bytes`` straight to the ASGI app.

    Returns the status and how many chunks the app pulled before answering.
    """
    pulled, sent = 0, []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"0" * chunk_bytes, "more_body": pulled < chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"image/png"), (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], pulled


@pytest.mark.parametrize("path", ["/predict", "/v1/models/lenet5:predict"])
def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(client, path):
    chunk = 64 * 1024
    status, pulled = asgi_post(client.app, path, chunk, chunks=16 * 1024)  # 1 GB offered
    assert status == 413 and pulled == MAX_UPLOAD_BYTES // chunk + 1


def blocking_model() -> tuple[ServedModel, threading.Event, threading.Semaphore]:
    """A model whose classification waits for ``release``; ``entered`` counts the calls that started."""
    release, entered = threading.Event(), threading.Semaphore(0)

    def classify(digits: np.ndarray) -> np.ndarray:
        entered.release()
        assert release.wait(timeout=60)
        return np.full((len(digits), 10), 0.1, np.float32)

    return ServedModel(classify, "test"), release, entered


def in_thread(call, *args, **kwargs) -> tuple[threading.Thread, list]:
    result = []
    thread = threading.Thread(target=lambda: result.append(call(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, result


def test_concurrent_requests_of_both_apis_share_one_model_call_and_the_queue_is_bounded():
    model, release, entered = blocking_model()
    digit = {"pixels": np.pad(np.full((10, 4), 255), ((9, 9), (12, 12))).tolist()}
    options = ServerOptions(BatchingOptions(max_batch_size=3, max_enqueued_batches=1))
    app = create_app(model, options)
    with asgi_client(app) as client:
        first, first_result = in_thread(client.post, "/predict", json=digit)
        assert entered.acquire(timeout=30), "the first request reached the classifier"
        waiting = [in_thread(client.post, "/predict", json=digit),
                   in_thread(client.post, "/v1/models/lenet5:predict", json={"instances": [[[0] * 28] * 28] * 2})]
        deadline = time.monotonic() + 10
        while app.service.batcher.queued < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        health, health_result = in_thread(client.get, "/health")
        health.join(timeout=10)
        assert health_result and health_result[0].status_code == 200, "the event loop answers while the model works"
        busy = client.post("/v1/models/lenet5:predict", json={"instances": [[[0] * 28] * 28]})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
        assert not entered.acquire(timeout=0.2), "the queued requests wait for the running batch"
        release.set()
        for thread, _ in [(first, None), *waiting]:
            thread.join(timeout=30)
    assert app.service.batcher.batches == 2, "the three queued digits ran in one call"
    assert first_result[0].status_code == 200 and first_result[0].json()["probability"] == pytest.approx(0.1)
    assert waiting[0][1][0].status_code == 200 and waiting[0][1][0].json()["probability"] == pytest.approx(0.1)
    assert [p["classes"] for p in waiting[1][1][0].json()["predictions"]] == [-1, -1]  # blank digits: no digit


@pytest.fixture
def cli(capsys):
    """Runs ``lenet-tf`` in this process: (exit status, stderr lines); restores the SIGTERM handler it installs."""
    previous = signal.getsignal(signal.SIGTERM)

    def run(*args) -> tuple[int, list[str]]:
        try:
            status = main([str(a) for a in args])
        except SystemExit as exit:
            status = exit.code
        return status, capsys.readouterr().err.strip().splitlines()

    yield run
    signal.signal(signal.SIGTERM, previous)


def test_serve_start_up_errors_are_one_line(cli, real_model_dir, tmp_path):
    status, err = cli("serve", "--port", 99999)
    assert status == 2 and "argument --port: must lie in 0..65535, got 99999" in err[-1]
    with socket.create_server(("127.0.0.1", 0)) as taken:  # something else listens there
        port = taken.getsockname()[1]
        status, err = cli("serve", "--port", port, "--checkpoint", real_model_dir[0])
    assert status == 1 and err == [f"lenet-tf: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    status, err = cli("serve", "--port", 0, "--checkpoint", tmp_path / "missing")
    assert status == 1 and len(err) == 1 and err[0].startswith("lenet-tf: error: ")  # no "serving on" line


@pytest.mark.parametrize("flag, value, accepted", [
    *((flag, value, "a finite number in (0, 1e+06)") for flag in
      ("--header-timeout", "--body-timeout", "--request-timeout", "--prepare-timeout") for value in ("nan", "inf")),
    ("--prepare-timeout", "1e6", "a finite number in (0, 1e+06)"),
    ("--body-min-rate", "nan", "a finite number > 0"),
    ("--batch-timeout-micros", "10000000000000000", "in [0, 10000000]"),
    ("--batch-timeout-micros", "-1", "in [0, 10000000]"),
    ("--max-batch-size", "0", "≥ 1"),
])
def test_serve_flags_out_of_range_exit_2_naming_the_flag_and_range(cli, flag, value, accepted):
    status, err = cli("serve", "--port", 0, "--checkpoint", "unused", flag, value)
    assert status == 2 and err[-1] == f"lenet-tf serve: error: argument {flag}: must be {accepted}, got {value}"
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("make, name", [
    *((lambda name=name: ServerOptions(**{name: float("nan")}), name)
      for name in ("header_timeout", "request_timeout", "prepare_timeout")),
    (lambda: BodyLimits(timeout=float("inf")), "timeout"), (lambda: BodyLimits(min_rate=0.0), "min_rate"),
    (lambda: BodyLimits(max_bytes=0), "max_bytes"),
])
def test_the_library_checks_the_limits_as_the_flags_do(make, name):
    with pytest.raises(ValueError, match=f"^{name} must be "):
        make()


SERVER_TIMEOUTS = {"--header-timeout": 1.0, "--body-timeout": 1.0, "--body-min-rate": 2000}


@pytest.fixture(scope="module")
def served(real_model_dir):
    """A real ``lenet-tf serve`` on a free port with one-second deadlines; yields its URL once it printed
    "serving on", and the list of the lines it writes on stderr afterwards."""
    flags = [str(x) for item in SERVER_TIMEOUTS.items() for x in item]
    process = subprocess.Popen([sys.executable, "-m", "lenet_tf", "serve", "--checkpoint", str(real_model_dir[0]),
                                "--port", "0", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines, log = queue.Queue(), []
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    deadline = time.monotonic() + 120
    url = None
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line.startswith("serving on "):
            url = line.split()[2].rstrip("/")
    if url is None:
        process.kill()
        pytest.fail("the server did not start")
    threading.Thread(target=lambda: [log.append(lines.get()) for _ in iter(int, 1)], daemon=True).start()
    yield url, log
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(served):
    return served[0]


def test_the_server_is_ready_when_it_says_so_and_cuts_off_oversized_chunked_uploads(server, real_model_dir):
    import httpx

    health = httpx.get(server + "/health", timeout=5).json()  # printed only once the model loaded
    assert health["epoch"] == real_model_dir[1].best_epoch
    host, port = server.removeprefix("http://").split(":")
    chunk = b"0" * (1 << 20)
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: lenet\r\nContent-Type: image/png\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sock.setblocking(False)
        sent, pending = 0, memoryview(framed)
        while sent < 1024 << 20:  # offers 1 GB, sending only while the server has not answered
            readable, writable, _ = select.select([sock], [sock], [], 30)
            assert readable or writable, "the server neither read nor answered for 30 s"
            if readable:
                break
            pending = pending[sock.send(pending):]
            if not pending:
                sent, pending = sent + len(chunk), memoryview(framed)
        assert sent < 64 << 20, "the server stopped reading soon after the limit"
        sock.setblocking(True)
        answer = b""
        with contextlib.suppress(ConnectionResetError):  # the server resets after its answer: reads stop there
            while piece := sock.recv(65536):
                answer += piece
    assert answer.startswith(b"HTTP/1.1 413 ") and b"too large" in answer, answer[:300]
    assert httpx.get(server + "/health", timeout=5).status_code == 200


def raw_exchange(url: str, data: bytes, pace: float = 0.0, timeout: float = 10.0) -> tuple[bytes, float]:
    """Sends ``data`` to the server (a byte every ``pace`` seconds when given), then reads until the server
    closes the connection; returns what it answered and when it closed (seconds after connecting)."""
    host, port = url.removeprefix("http://").split(":")
    began = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            if pace:
                for byte in data:
                    sock.sendall(bytes([byte]))
                    time.sleep(pace)
            else:
                sock.sendall(data)
        except OSError:
            pass  # closed by the server while we were still sending
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer, time.monotonic() - began


def test_slow_bodies_and_headers_get_408_and_are_cut_off_while_others_are_served(server):
    import httpx

    slow_body = (b"POST /v1/models/lenet5:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 5000\r\n\r\n" + b" " * 5000)
    header_prefix_len = slow_body.index(b"\r\n\r\n") + 4
    results = []

    # 18 clients send their body at 20 bytes/s (below the 2000 bytes/s minimum), 2 stop half-way through headers
    def body_trickler():
        host, port = server.removeprefix("http://").split(":")
        began = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(slow_body[:header_prefix_len])
            answer = b""
            for _ in range(200):  # 20 bytes/s for at most 10 s, until the server answers
                sock.sendall(b" ")
                if select.select([sock], [], [], 0.05)[0]:
                    break
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except OSError:
                pass
        results.append(("body", answer, time.monotonic() - began))

    def header_staller():
        answer, seconds = raw_exchange(server, b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        results.append(("header", answer, seconds))

    threads = [threading.Thread(target=body_trickler) for _ in range(18)]
    threads += [threading.Thread(target=header_staller) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    for _ in range(5):  # everybody else is served meanwhile
        began = time.monotonic()
        answer = httpx.post(server + "/v1/models/lenet5:predict", json={"instances": [DIGIT_ONE.tolist()]},
                            timeout=5)
        assert answer.status_code == 200 and time.monotonic() - began < 2
    for thread in threads:
        thread.join(timeout=20)
    assert len(results) == 20
    for kind, answer, seconds in results:
        assert answer.startswith(b"HTTP/1.1 408"), (kind, answer[:200])
        assert b"too slow" in answer and 0.9 < seconds < 5, (kind, seconds)  # then the connection was closed


def test_a_client_that_hangs_up_mid_upload_leaves_no_traceback(served):
    url, log = served
    host, port = url.removeprefix("http://").split(":")
    before = len(log)
    for path in ("/predict", "/v1/models/lenet5:predict"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         "Content-Length: 100000\r\n\r\n".encode() + b"0" * 1000)
            time.sleep(0.2)
    import httpx

    assert httpx.get(url + "/health", timeout=5).status_code == 200
    time.sleep(0.3)
    assert log[before:] == [], "the server wrote nothing about clients that left"


def chrome_driver():
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("no Chromium/ChromeDriver installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=900,700"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def draw(browser, pad, strokes):
    from selenium.webdriver.common.action_chains import ActionChains

    for stroke in strokes:
        actions = ActionChains(browser, duration=20)
        x0, y0 = stroke[0]
        actions.move_to_element_with_offset(pad, x0 - 140, y0 - 140).click_and_hold()
        for x, y in stroke[1:]:
            actions.move_to_element_with_offset(pad, x - 140, y - 140)
        actions.release().perform()


def test_drawing_on_the_page_shows_the_prediction(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chrome_driver()
    try:
        browser.get(server + "/")
        pad = browser.find_element(By.ID, "pad")
        digit = browser.find_element(By.ID, "digit")
        draw(browser, pad, [[(140, 40 + 10 * k) for k in range(21)]])  # a vertical stroke: one
        WebDriverWait(browser, 30).until(lambda b: digit.get_attribute("data-strokes") == "1")
        assert digit.text == "1"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 3
        browser.save_screenshot(str(tmp_path / "one.png"))
        browser.find_element(By.ID, "clear").click()
        assert digit.text == "–"
        ring = [(140 + 70 * np.sin(t), 140 - 100 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 40)]
        draw(browser, pad, [[(round(x), round(y)) for x, y in ring]])  # an oval: zero
        WebDriverWait(browser, 30).until(lambda b: digit.get_attribute("data-strokes") == "1" and digit.text != "–")
        assert digit.text == "0"
        seen = browser.execute_script(
            "return Array.from(document.getElementById('input').getContext('2d')"
            ".getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 == 0 && v > 128).length")
        assert seen > 20, "the 28x28 input shown beside the pad holds the drawn digit"
    finally:
        browser.quit()


def test_a_multi_frame_upload_is_read_by_its_first_frame_and_served_with_tta(real_model_dir, real_mnist):
    from lenet_tf.data.images import to_mnist
    from lenet_tf.trained import TrainedModel

    digits = real_mnist.test_images[:2]
    frames = [Image.fromarray(255 - digit).resize((84, 84), Image.BICUBIC) for digit in digits]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    with TrainedModel(real_model_dir[0], tta=True) as model:
        expected = model.predict(to_mnist(digits[0])[np.newaxis]).probabilities[0]
    served = asgi_client(create_app(checkpoint_model(real_model_dir[0], tta=True)))
    animated = served.post("/predict", content=buffer.getvalue(), headers={"Content-Type": "image/gif"}).json()
    assert animated["note"] == "2 frames: read the first" and animated["digit"] == real_mnist.test_labels[0]
    still = served.post("/predict", json={"pixels": digits[0].tolist()}).json()
    assert "note" not in still
    np.testing.assert_allclose(still["probabilities"], expected, atol=1e-3)


def test_an_answer_to_a_wiped_drawing_is_never_shown(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chrome_driver()
    try:
        browser.get(server + "/")
        # A slow network: every answer arrives 600 ms after its request, so Clear always comes first.
        browser.execute_script("const send = window.fetch; window.fetch = (...args) => "
                               "new Promise((done) => setTimeout(done, 600)).then(() => send(...args));")
        pad = browser.find_element(By.ID, "pad")
        digit = browser.find_element(By.ID, "digit")
        seven = [[(60, 50), (220, 50), (120, 240)]]
        for _ in range(3):
            draw(browser, pad, seven)
            browser.find_element(By.ID, "clear").click()
            time.sleep(1.2)  # the answer to the wiped 7 has arrived by now
            assert digit.text == "–" and not browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
            assert browser.find_element(By.ID, "status").text == ""
        # The drawing on the canvas still gets its answers (first those sent while the stroke was drawn).
        draw(browser, pad, [[(140, 40 + 10 * k) for k in range(21)]])
        WebDriverWait(browser, 30).until(lambda b: digit.text == "1")
    finally:
        browser.quit()


def test_a_calibrated_model_answers_null_with_a_reason_and_the_probabilities(calibrated_model_dir, real_mnist):
    """A letter is "not a digit" with its probabilities, in both APIs; a real digit is still read."""
    calibrated = asgi_client(create_app(checkpoint_model(calibrated_model_dir)))
    letter = io.BytesIO()
    letter_image("A").save(letter, format="PNG")
    answer = calibrated.post("/predict", content=letter.getvalue(), headers={"Content-Type": "image/png"}).json()
    assert answer["digit"] is None and answer["reason"].startswith("not a digit (novelty ")
    assert len(answer["probabilities"]) == 10 and len(answer["top3"]) == 3
    answer = calibrated.post("/predict", content=png_bytes(real_mnist.test_images[0]),
                             headers={"Content-Type": "image/png"}).json()
    assert answer["digit"] == real_mnist.test_labels[0] and answer.get("reason") is None
    # The same letter as an MNIST-format array, as predict reads its file (a user's own to_mnist).
    letter_pixels = to_mnist(np.asarray(letter_image("A"), np.float32))
    served = calibrated.post("/v1/models/lenet5:predict", json={"instances": [
        real_mnist.test_images[0].tolist(), letter_pixels.tolist()]}).json()
    digits = [p["digits"] for p in served["predictions"]]
    assert digits == [real_mnist.test_labels[0], -1], served
    assert all(0 <= p["classes"] <= 9 for p in served["predictions"])
