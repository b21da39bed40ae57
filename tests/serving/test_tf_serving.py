"""TensorFlow Serving's REST API in `lenet-tf serve`: real MNIST digits against both backends, status, metadata,
and the 400/404 answers."""

import json

import numpy as np
import pytest

fastapi = pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from asgi import asgi_client  # noqa: E402

from lenet_tf.serving.server import (MAX_UPLOAD_BYTES, ServedModel, checkpoint_model, create_app,  # noqa: E402
                                     saved_model_dir, saved_model_model)
from lenet_tf.serving.tf_serving import predict_response  # noqa: E402
from lenet_tf.trained import TrainedModel  # noqa: E402

DIGITS = 60


@pytest.fixture(scope="module")
def expected(real_model_dir, real_mnist):
    """The first test digits and what the checkpoint predicts for them in-process."""
    with TrainedModel(real_model_dir[0]) as model:
        return real_mnist.test_images[:DIGITS], model.predict(real_mnist.test_images[:DIGITS])


@pytest.fixture(scope="module")
def client(real_model_dir):
    return asgi_client(create_app(checkpoint_model(real_model_dir[0])))


@pytest.fixture(scope="module")
def exported(real_model_dir, tmp_path_factory):
    """The checkpoint exported twice: as a plain SavedModel, and as version 3 in a TF Serving base folder."""
    from lenet_tf.serving.saved_model import export_saved_model

    root = tmp_path_factory.mktemp("exported")
    export_saved_model(real_model_dir[0], root / "lenet5")
    export_saved_model(real_model_dir[0], root / "base" / "3")
    return root


def check(classes, probabilities, expected_predictions):
    n = len(classes)
    assert classes == expected_predictions.classes[:n].tolist()
    np.testing.assert_allclose(probabilities, expected_predictions.probabilities[:n], rtol=1e-5, atol=1e-7)


def post_both_formats(client, url, digits, expected_predictions):
    """Posts ``digits`` as [N,28,28] rows and as a [N,28,28,1] column; both answers must match the expectation."""
    rows = client.post(url, json={"instances": digits.tolist()})
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert len(predictions) == len(digits) and set(predictions[0]) == {"classes", "probabilities"}
    check([p["classes"] for p in predictions], [p["probabilities"] for p in predictions], expected_predictions)
    columns = client.post(url, json={"inputs": {"images": digits[..., None].tolist()}})
    assert columns.status_code == 200, columns.text
    outputs = columns.json()["outputs"]
    assert len(outputs["classes"]) == len(digits)
    check(outputs["classes"], outputs["probabilities"], expected_predictions)


def test_row_and_columnar_predictions_equal_the_trained_model(client, expected):
    digits, predictions = expected
    post_both_formats(client, "/v1/models/lenet5:predict", digits, predictions)
    post_both_formats(client, "/v1/models/lenet5/versions/1:predict", digits, predictions)
    named = client.post("/v1/models/lenet5:predict", json={
        "signature_name": "serving_default", "instances": [{"images": d.tolist()} for d in digits[:3]]})
    bare = client.post("/v1/models/lenet5:predict", json={"inputs": digits[:3].tolist()})
    assert [p["classes"] for p in named.json()["predictions"]] == bare.json()["outputs"]["classes"] \
        == predictions.classes[:3].tolist()


def test_saved_model_backend_and_version_folders(exported, expected):
    digits, predictions = expected
    plain = asgi_client(create_app(saved_model_model(exported / "lenet5")))
    post_both_formats(plain, "/v1/models/lenet5/versions/1:predict", digits, predictions)
    assert plain.get("/health").json() == {"status": "ok", "model": "lenet5", "version": 1, "source": "saved_model",
                                           "epoch": None}
    versioned = asgi_client(create_app(saved_model_model(exported / "base")))  # serves base/3, as TF Serving would
    assert versioned.get("/v1/models/lenet5").json()["model_version_status"][0]["version"] == "3"
    post_both_formats(versioned, "/v1/models/lenet5/versions/3:predict", digits[:10], predictions)
    assert versioned.post("/v1/models/lenet5/versions/1:predict", json={"instances": digits[:1].tolist()}
                          ).status_code == 404


def test_version_folders_are_ascii_numbers_and_found_by_their_own_names(tmp_path):
    """``"²".isdigit()`` is true but ``int("²")`` fails: such a folder was a crash of ``serve``; ``01`` was looked
    for as ``1``. TF Serving's versions are folders named by decimal numbers."""
    from lenet_tf.serving.server import saved_model_dir

    for name in ("²", "١", "01", "2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert saved_model_dir(tmp_path) == (tmp_path / "2", 2)
    (tmp_path / "2" / "saved_model.pb").unlink()
    assert saved_model_dir(tmp_path) == (tmp_path / "01", 1)
    assert saved_model_dir(tmp_path / "²") == (tmp_path / "²", 1)


def test_a_version_folder_beyond_int64_is_no_version_to_discovery_or_urls(tmp_path):
    """TF Serving's versions are int64, other folders skipped: ``99999999999999999999999`` was served, AVAILABLE,
    while its URL got 400; the largest int64, found as a folder, got 400 in URLs (18 digits at most)."""
    largest, beyond = str(2 ** 63 - 1), str(2 ** 63)
    for name in ("3", largest, beyond, "99999999999999999999999"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert saved_model_dir(tmp_path / beyond) == (tmp_path / beyond, 1)  # a SavedModel named so: not a version
    folder, version = saved_model_dir(tmp_path)
    assert (folder, version) == (tmp_path / largest, 2 ** 63 - 1)
    client = asgi_client(create_app(ServedModel(lambda digits: np.zeros((len(digits), 10), np.float32), "test",
                                                version=version)))
    assert client.get("/health").json()["version"] == version
    assert client.get(f"/v1/models/lenet5/versions/{largest}").json()["model_version_status"][0]["version"] == largest
    for name in (beyond, "99999999999999999999999"):
        response = client.get(f"/v1/models/lenet5/versions/{name}")
        assert response.status_code == 400
        assert response.json() == {"error": f"Malformed request: version '{name}' is not a number in 0..{largest}"}
    (tmp_path / largest / "saved_model.pb").unlink()
    assert saved_model_dir(tmp_path) == (tmp_path / "3", 3)


@pytest.mark.parametrize("damage", ["no variables folder", "truncated variables"])
def test_serve_refuses_a_saved_model_with_broken_variables_in_one_line(exported, tmp_path, damage, cli):
    """Through the command in this process: the model loads before any server runs (a loadable one is served by
    ``saved_model_model`` first, so a test that stopped failing would end here rather than serve)."""
    import shutil

    from lenet_tf.core.errors import CheckpointError
    from lenet_tf.serving.server import saved_model_model

    broken = tmp_path / "lenet5"
    shutil.copytree(exported / "lenet5", broken)
    if damage == "no variables folder":
        shutil.rmtree(broken / "variables")
    else:
        data = next((broken / "variables").glob("variables.data-*"))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        saved_model_model(broken)
    result = cli("serve", "--port", "0", "--saved-model", broken)
    assert result.returncode == 1 and result.stdout == "", result
    reason = "Failed to find any matching files" if damage == "no variables folder" else "Read less bytes"
    assert result.stderr.startswith(f"lenet-tf: error: {broken}: not a usable lenet_tf SavedModel (cannot restore "
                                    f"its variables: ") and reason in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr  # no traceback, no "serving on"


def test_metadata_describes_the_exported_signature(client, exported):
    from tensorflow.core.framework import types_pb2

    from lenet_tf.core.tf import tf

    signature = tf.saved_model.load(str(exported / "lenet5")).signatures["serving_default"]
    metadata = client.get("/v1/models/lenet5/metadata").json()
    assert metadata["model_spec"] == {"name": "lenet5", "signature_name": "", "version": "1"}
    described = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert described["method_name"] == "tensorflow/serving/predict"
    actual = {"inputs": {spec.name: spec for spec in signature.structured_input_signature[1].values()},
              "outputs": signature.structured_outputs}
    for side in ("inputs", "outputs"):
        assert set(described[side]) == set(actual[side])
        for name, info in described[side].items():
            spec = actual[side][name]
            assert info["dtype"] == types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
            dims = None if spec.shape.rank is None else [-1 if d is None else d for d in spec.shape.as_list()]
            assert info["tensor_shape"]["unknown_rank"] == (dims is None)
            assert [int(d["size"]) for d in info["tensor_shape"]["dim"]] == (dims or [])
    assert client.get("/v1/models/lenet5/versions/1/metadata").json() == metadata


def test_model_status_and_unknown_models_or_versions(client):
    status = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                        "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get("/v1/models/lenet5").json() == status
    assert client.get("/v1/models/lenet5/versions/1").json() == status
    for method, path, message in [
            ("get", "/v1/models/mnist", "Servable not found for request: Latest(mnist)"),
            ("get", "/v1/models/lenet5/versions/2", "Servable not found for request: Specific(lenet5, 2)"),
            ("get", "/v1/models/other/metadata", "Latest(other)"),
            ("post", "/v1/models/other:predict", "Latest(other)"),
            ("post", "/v1/models/lenet5/versions/7:predict", "Specific(lenet5, 7)")]:
        response = getattr(client, method)(path, **({"json": {"instances": [[[0] * 28] * 28]}} if method == "post"
                                                      else {}))
        assert response.status_code == 404 and message in response.json()["error"], path
    for path in ("/v1/models/lenet5:classify", "/v1/models/lenet5/versions/1:classify"):  # the latter said 405
        malformed = client.post(path, json={"examples": []})
        assert malformed.status_code == 400 and "Malformed request" in malformed.json()["error"], path


BLANK = [[0] * 28] * 28


@pytest.mark.parametrize("body, message", [
    ({"instances": [[[0] * 27] * 28]}, "must have shape [N,28,28] or [N,28,28,1], got [1,28,27]"),
    ({"inputs": BLANK}, "got [28,28]"),  # columnar needs the batch axis
    ({"inputs": [[0] * 784]}, "got [1,784]"),
    ({"instances": [BLANK, [[0] * 28] * 27]}, "not a dense tensor"),
    ({"instances": [[1, 2], [3]]}, "input 'images' is not a dense tensor"),  # not "got [2,2]": its first rows
    ({"instances": [[[0.5] * 28] * 28]}, "values must be integers 0..255, got decimal numbers"),
    ({"instances": [[[True] * 28] * 28]}, "got booleans"),
    ({"instances": [[["7"] * 28] * 28]}, "got strings"),
    ({"instances": [[[256] + [0] * 27] + BLANK[1:]]}, "must lie in 0..255, got 0..256"),
    ({"inputs": [[[-1] + [0] * 27] + BLANK[1:]]}, "got -1..0"),
    ({"instances": [BLANK], "inputs": [BLANK]}, "only one of 'inputs' or 'instances'"),
    ({"images": [BLANK]}, "Missing 'inputs' or 'instances' key"),
    ({"instances": []}, "No values in 'instances' array"),
    ({"instances": BLANK[0][0]}, "Expecting 'instances' to be a list"),
    ({"instances": [BLANK], "signature_name": "classify"},
     'Serving signature name: "classify" not found in signature def'),
    ({"instances": [[[1, True] + [0] * 26] + BLANK[1:]]}, "got booleans"),  # true is no uint8, even among integers
    ({"instances": [BLANK], "signature_name": "predict_images"}, 'is not {"b64": "<base64>"}'),
    ({"instances": [{"b64": "not base64!"}], "signature_name": "predict_images"}, "not valid base64"),
    ({"instances": [{"b64": "aGVsbG8="}], "signature_name": "predict_images"}, "image 0: not a readable image"),
    ({"instances": [BLANK], "signature_name": 3}, "'signature_name' key must be a string"),
    ({"instances": [{"images": BLANK}, BLANK]}, "Expecting object but got value/list at item 1"),
    ({"instances": [{"image": BLANK}]}, "the signature's only input is 'images'"),
    ({"inputs": {"images": [BLANK], "labels": [3]}}, "the signature's only input is 'images'"),
    ([BLANK], "must be a JSON object"),
])
def test_bad_requests_get_400_with_a_clear_error(client, body, message):
    response = client.post("/v1/models/lenet5:predict", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


@pytest.mark.parametrize("raw, status, message", [
    (b"{not json", 400, "JSON Parse error"),
    (b'{"instances": [[' + b"9" * 400 + b"]]}", 400, "got [1,1]"),
    (b'{"instances": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", 400, "nested too deeply"),
    (b'{"instances": [' + b"0," * (MAX_UPLOAD_BYTES // 2) + b"0]}", 413, "too large"),
])
def test_hostile_bodies_get_4xx(client, raw, status, message):
    response = client.post("/v1/models/lenet5:predict", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == status and message in response.json()["error"]
    assert client.get("/v1/models/lenet5").status_code == 200


def test_a_huge_integer_of_the_right_shape_is_refused(client):
    digit = [[0] * 28 for _ in range(28)]
    body = json.dumps({"instances": [digit]}).replace("0", "9" * 400, 1).encode()
    response = client.post("/v1/models/lenet5:predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "must be integers 0..255" in response.json()["error"]


def test_floats_are_written_as_tensorflow_serving_writes_them():
    # Six significant digits when they give the float32 back, nine otherwise; whole numbers end in ".0".
    probabilities = np.array([[0.1, 0.99999994, 1.0, 2.5e-7, 1 / 3, 0, 0, 0, 0, 0]], np.float32)
    row = predict_response(probabilities, columnar=False)
    assert json.dumps(row) == ('{"predictions": [{"classes": 2, "probabilities": '
                               '[0.1, 0.99999994, 1.0, 2.5e-07, 0.333333343, 0.0, 0.0, 0.0, 0.0, 0.0]}]}')
    assert np.array_equal(np.array(row["predictions"][0]["probabilities"], np.float32), probabilities[0])
    columnar = predict_response(np.vstack([probabilities, probabilities[:, ::-1]]), columnar=True)
    assert columnar["outputs"]["classes"] == [2, 7] and len(columnar["outputs"]["probabilities"]) == 2


def test_predict_images_gives_what_lenet_tf_predict_gives(client, exported, real_model_dir, real_mnist, tmp_path):
    """PNG files of real MNIST test digits: `predict_images` in serve (preparation beside the graph, the CLI's own
    code) and in the exported SavedModel (preparation in the graph) against `lenet-tf predict` on the same files."""
    import base64

    from PIL import Image

    from lenet_tf.core.tf import tf
    from lenet_tf.serving.predict import predict_files

    paths = []
    for k, digit in enumerate(real_mnist.test_images[:24]):
        paths.append(tmp_path / f"{k:02d}.png")
        Image.fromarray(255 - digit).resize((84, 84), Image.BICUBIC).save(paths[-1])
    with TrainedModel(real_model_dir[0]) as model:
        cli = predict_files(paths, model)
    pictures = [path.read_bytes() for path in paths]
    response = client.post("/v1/models/lenet5:predict", json={
        "signature_name": "predict_images", "instances": [{"b64": base64.b64encode(p).decode()} for p in pictures]})
    assert response.status_code == 200, response.text
    served = response.json()["predictions"]
    assert [p["classes"] for p in served] == [r.digit for r in cli]
    np.testing.assert_allclose([max(p["probabilities"]) for p in served], [r.probability for r in cli], rtol=1e-5)
    columnar = client.post("/v1/models/lenet5:predict", json={
        "signature_name": "predict_images", "inputs": {"images": [{"b64": base64.b64encode(pictures[0]).decode()}]}})
    assert columnar.json()["outputs"]["classes"] == [cli[0].digit]
    signature = tf.saved_model.load(str(exported / "lenet5")).signatures["predict_images"]
    graph = signature(images=tf.constant(pictures))
    assert graph["classes"].numpy().tolist() == [r.digit for r in cli]
    np.testing.assert_allclose(graph["probabilities"].numpy().max(axis=1), [r.probability for r in cli], atol=0.02)


def test_a_calibrated_export_says_not_a_digit_as_serve_does(calibrated_model_dir, real_mnist, tmp_path):
    """The export of a calibrated run has ``digits`` and ``novelty`` in both signatures, in plain TensorFlow; served
    from the export or from the checkpoint, TF Serving's API answers the same, and each describes it."""
    from images import letter_image
    from PIL import Image

    from lenet_tf.core.tf import tf
    from lenet_tf.data.images import to_mnist
    from lenet_tf.data.other_writers import png_bytes
    from lenet_tf.serving.saved_model import export_saved_model

    letter = to_mnist(np.asarray(letter_image("A"), np.float32))
    digits = np.stack([real_mnist.test_images[0], letter, real_mnist.test_images[1]])
    with TrainedModel(calibrated_model_dir) as model:
        expected = model.predict(digits)
    assert expected.rejected.tolist() == [False, True, False]
    export_saved_model(calibrated_model_dir, tmp_path / "lenet5")
    signatures = tf.saved_model.load(str(tmp_path / "lenet5")).signatures
    raw = signatures["serving_default"](images=tf.constant(digits))
    assert set(raw) == {"classes", "probabilities", "digits", "novelty"}
    assert raw["digits"].numpy().tolist() == [real_mnist.test_labels[0], -1, real_mnist.test_labels[1]]
    np.testing.assert_allclose(raw["novelty"].numpy(), expected.novelty, rtol=1e-4, atol=1e-3)
    seven = Image.fromarray(255 - real_mnist.test_images[0]).resize((84, 84))  # dark ink on white paper
    pictures = tf.constant([png_bytes(seven), png_bytes(letter_image("A"))])
    assert signatures["predict_images"](images=pictures)["digits"].numpy().tolist() == [real_mnist.test_labels[0], -1]

    served = [asgi_client(create_app(checkpoint_model(calibrated_model_dir))),
              asgi_client(create_app(saved_model_model(tmp_path / "lenet5")))]
    answers = [client.post("/v1/models/lenet5:predict", json={"inputs": digits.tolist()}).json()["outputs"]
               for client in served]
    for outputs in answers:
        assert set(outputs) == {"classes", "probabilities", "digits", "novelty"}
        assert outputs["digits"] == raw["digits"].numpy().tolist()
        np.testing.assert_allclose(outputs["novelty"], expected.novelty, rtol=1e-4, atol=1e-3)
    described = [client.get("/v1/models/lenet5/metadata").json()["metadata"]["signature_def"]["signature_def"]
                 for client in served]
    assert described[0] == described[1]
    assert set(described[0]["serving_default"]["outputs"]) == set(raw)
