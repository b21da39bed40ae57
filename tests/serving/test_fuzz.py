"""Short fuzz runs (Hypothesis, derandomized, no example database): mutated pictures of every format and mutated
TF Serving bodies get a result or our own one-line error, never another exception. The long run is
``benchmarks/fuzz_inputs.py``."""

import io
import json

import numpy as np
import pytest
from fuzzing import mutate_bytes, mutated_body, mutated_picture, seed_bodies, seed_pictures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenet_tf.core.errors import DataError
from lenet_tf.data.images import decode_picture, mnist_or_blank
from lenet_tf.serving.bodies import RequestError
from lenet_tf.serving.tf_serving import BadRequest, parse_predict_request
from lenet_tf.serving.uploads import image_upload

SHORT = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=4), max_leaves=200)


def test_every_seed_is_a_valid_picture_of_its_format():
    from PIL import Image

    formats = set()
    for name, data in seed_pictures().items():
        picture = decode_picture(io.BytesIO(data), name)
        assert mnist_or_blank(picture.gray).max() == 255, name
        formats.add(Image.open(io.BytesIO(data)).format)
    assert formats == {"PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"}


@SHORT
@given(st.randoms(use_true_random=False))
def test_a_mutated_picture_is_read_or_refused_in_one_line(rng):
    name, data = mutated_picture(rng)
    try:
        picture = decode_picture(io.BytesIO(data), name)
        digit = mnist_or_blank(picture.gray, name)
    except DataError as err:
        assert str(err).startswith(f"{name}: ") and "\n" not in str(err)
    else:
        assert digit.shape == (28, 28) and digit.dtype == np.uint8


@SHORT
@given(st.randoms(use_true_random=False))
def test_the_server_answers_a_mutated_picture_with_a_4xx_or_a_digit(rng):
    _, data = mutated_picture(rng)
    try:
        digit, _ = image_upload(data)
    except RequestError as err:
        assert 400 <= err.status < 500 and "\n" not in err.message
    else:
        assert digit.shape == (28, 28)


def check_body(body: bytes) -> None:
    try:
        request = parse_predict_request(body)
    except BadRequest as err:
        assert "\n" not in str(err) and len(str(err)) < 400
    else:
        if isinstance(request.images, np.ndarray):
            assert request.images.dtype == np.uint8 and request.images.shape[1:] == (28, 28)
        else:
            assert all(isinstance(picture, bytes) for picture in request.images)


@SHORT
@given(st.randoms(use_true_random=False))
def test_a_mutated_tf_serving_body_is_parsed_or_refused_with_400(rng):
    check_body(mutated_body(rng))


@settings(SHORT, max_examples=100)
@given(JSON, st.sampled_from(["instances", "inputs"]), st.sampled_from(["", "predict_images"]))
def test_any_json_value_as_the_tensor_is_parsed_or_refused_with_400(value, key, signature):
    check_body(json.dumps({key: value, "signature_name": signature}).encode())


@pytest.mark.parametrize("body", [
    {"instances": ["a" * 100_000] + [""] * 150_000},  # asked NumPy for 56 GiB
    {"instances": [[[0] * 28] * 28] * 2 + [[["x" * 50_000] * 28] * 28]},
    {"inputs": [[[[0] * 1000] * 28] * 28]},
])
def test_hostile_tensors_are_refused_before_any_array_is_made(body, monkeypatch):
    monkeypatch.setattr(np, "asarray", lambda *a, **k: pytest.fail("np.asarray on an unchecked value"))
    with pytest.raises(BadRequest):
        parse_predict_request(json.dumps(body).encode())


def test_bodies_of_nested_lists_are_counted_before_parsing():
    with pytest.raises(BadRequest, match="lists and objects, more than"):
        parse_predict_request(b'{"instances": [' + b"[]," * (1 << 20) + b"[]]}")


def test_mutations_are_deterministic_and_change_the_input():
    import random

    seed = seed_bodies()[0]
    assert mutated_body(random.Random(3)) == mutated_body(random.Random(3))
    assert mutate_bytes(b"abcdef" * 10, random.Random(1)) != b"abcdef" * 10
    assert json.dumps(seed).encode() != mutated_body(random.Random(5))
