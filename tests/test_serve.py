"""The web demo: the HTTP API through FastAPI's test client, and the drawing page in a real headless Chromium."""

import io
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from ports import free_ports

fastapi = pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from lenet_tf.serve import MAX_UPLOAD_BYTES, checkpoint_classifier, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(real_model_dir):
    classifier, info = checkpoint_classifier(real_model_dir[0])
    return TestClient(create_app(classifier, info))


def png_bytes(array: np.ndarray, invert=True, size=(84, 84)) -> bytes:
    image = Image.fromarray(255 - array if invert else array).resize(size, Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_and_page_and_openapi(client):
    assert client.get("/health").json()["status"] == "ok"
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
    ({"content": b"definitely not a picture", "headers": {"Content-Type": "image/png"}}, 415, "not an image"),
    ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty upload"),
    ({"json": {"pixels": [[0, 1], [2, 3]]}}, 422, "28x28"),
    ({"json": {"pixel": []}}, 422, "expected JSON"),
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422, "expected JSON"),
    ({"json": {"pixels": np.zeros((28, 28)).tolist()}}, 422, "blank image"),
    ({"files": {"other": ("x.png", b"abc", "image/png")}}, 400, "field named 'file'"),
    ({"content": b"0" * (MAX_UPLOAD_BYTES + 1), "headers": {"Content-Type": "image/png"}}, 413, "too large"),
])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(client, kwargs, status, message):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status and message in response.json()["detail"]
    assert client.get("/health").status_code == 200


def test_huge_image_dimensions_are_refused(client):
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000), 255).save(buffer, format="PNG")
    response = client.post("/predict", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413 and "too large" in response.json()["detail"]


@pytest.fixture(scope="module")
def server(real_model_dir):
    [port] = free_ports(1)
    process = subprocess.Popen([sys.executable, "-m", "lenet_tf", "serve", "--checkpoint", str(real_model_dir[0]),
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("the server did not start")
    yield url
    process.terminate()
    process.wait(timeout=30)


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
