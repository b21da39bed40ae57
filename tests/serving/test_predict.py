"""Predicting the user's own images: MNIST digits re-rendered as ordinary pictures, and hand-drawn ones."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import installed_script
from images import png_header_only
from PIL import Image, ImageDraw

from lenet_tf.core.errors import DataError
from lenet_tf.serving.predict import predict_files
from lenet_tf.data.images import (MAX_IMAGE_PIXELS, WORKING_SIDE, ImageTooLarge, image_files, load_grayscale,
                                 to_mnist)
from lenet_tf.trained import TrainedModel

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def render(digit: np.ndarray, path, size, invert: bool, offset: tuple[int, int], mode: str = "L"):
    """Draws an MNIST digit as an ordinary picture: another size, maybe dark-on-light, off-centre.

    The digit is scaled without changing its aspect ratio: a stretched digit is a different drawing.
    """
    canvas = np.zeros((size[1], size[0]), np.uint8)
    side = min(size) // 2
    scaled = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC))
    top, left = offset
    canvas[top:top + scaled.shape[0], left:left + scaled.shape[1]] = scaled
    if invert:
        canvas = 255 - canvas
    Image.fromarray(canvas).convert(mode).save(path)


def test_rendered_test_digits_get_the_same_predictions(tmp_path, real_model_dir, real_mnist):
    out, _ = real_model_dir
    with TrainedModel(out) as model:
        original = model.predict(real_mnist.test_images[:300])
    confident = [i for i in range(300) if original.probabilities[i].max() > 0.99
                 and original.classes[i] == real_mnist.test_labels[i]][:30]
    styles = [((56, 56), False, (0, 0), "L"), ((120, 90), True, (40, 50), "RGB"), ((200, 260), True, (5, 90), "L"),
              ((90, 90), False, (40, 3), "RGB")]
    for n, i in enumerate(confident):
        size, invert, offset, mode = styles[n % len(styles)]
        render(real_mnist.test_images[i], tmp_path / f"{n:02d}.{'jpg' if n % 5 == 4 else 'png'}", size, invert,
               offset, mode)
    with TrainedModel(out) as model:
        results = predict_files([tmp_path], model)
    assert len(results) == len(confident) >= 25
    assert [r.digit for r in results] == [int(original.classes[i]) for i in confident]


def hand_drawn(digit: int, path, size=(180, 220)):
    image = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(image)
    w, h = size
    if digit == 0:
        pen.ellipse([w * 0.25, h * 0.15, w * 0.75, h * 0.85], outline="black", width=16)
    elif digit == 1:
        pen.line([(w * 0.5, h * 0.12), (w * 0.5, h * 0.88)], fill="black", width=16)
    elif digit == 7:
        pen.line([(w * 0.22, h * 0.18), (w * 0.78, h * 0.18), (w * 0.42, h * 0.88)], fill="black", width=16,
                 joint="curve")
    image.save(path)


def test_hand_drawn_digits(tmp_path, real_model_dir):
    out, _ = real_model_dir
    for digit in (0, 1, 7):
        hand_drawn(digit, tmp_path / f"drawn_{digit}.png")
    with TrainedModel(out) as model:
        results = predict_files(sorted(tmp_path.iterdir()), model)
    assert [r.digit for r in results] == [0, 1, 7]
    assert all(r.top3[0][1] >= r.top3[1][1] >= r.top3[2][1] for r in results)


def test_preprocessing_recovers_an_mnist_digit(real_mnist):
    digit = real_mnist.test_images[0]
    big = np.asarray(Image.fromarray(255 - digit).resize((112, 112), Image.BICUBIC)).astype(np.float32)
    recovered = to_mnist(big)
    assert recovered.shape == (28, 28) and recovered.dtype == np.uint8
    correlation = np.corrcoef(recovered.ravel().astype(float), digit.ravel().astype(float))[0, 1]
    assert correlation > 0.9


def test_blank_and_unreadable_files_are_reported_per_file(tmp_path, real_model_dir):
    out, _ = real_model_dir
    Image.new("L", (40, 40), 255).save(tmp_path / "a_blank.png")
    (tmp_path / "b_junk.png").write_text("not an image")
    hand_drawn(1, tmp_path / "c_one.png")
    with TrainedModel(out) as model:
        results = predict_files([tmp_path], model)
    assert results[0].error is None and results[0].digit is None and results[0].reason == "blank image (no digit found)"
    assert len(results[0].probabilities) == 10
    assert "not a readable image" in results[1].error
    assert results[2].digit == 1 and results[2].error is None
    with pytest.raises(DataError, match="file not found"):
        load_grayscale(tmp_path / "missing.png")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("width, height", [(20000, 20000), (12000, 12000), (4097, 4096)])
def test_images_over_the_pixel_limit_are_refused_from_their_header(width, height):
    # 20000x20000 trips PIL's own bomb check inside Image.open, the others only lenet_tf's lower limit;
    # the data behind the header is truncated, so any attempt to decode would say "not a readable image".
    import io

    from lenet_tf.data.images import decode_grayscale

    assert width * height > MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLarge, match="upload: image too large .*16,777,216 pixels"):
        decode_grayscale(io.BytesIO(png_header_only(width, height)), "upload")
    with pytest.raises(DataError, match="not a readable image"):  # at the limit: decoding is attempted
        decode_grayscale(io.BytesIO(png_header_only(4096, 4096)), "upload")


def test_big_pictures_are_reduced_before_the_float_work(tmp_path):
    image = Image.new("RGB", (3000, 1200), "white")
    ImageDraw.Draw(image).line([(1500, 100), (1500, 1100)], fill="black", width=120)
    image.save(tmp_path / "wide.png")
    image.save(tmp_path / "wide.jpg")
    for name in ("wide.png", "wide.jpg"):
        gray = load_grayscale(tmp_path / name)
        assert max(gray.shape) <= WORKING_SIDE and gray.shape[1] / gray.shape[0] == pytest.approx(2.5, rel=0.01)
        digit = to_mnist(gray)
        rows, cols = np.nonzero(digit > 64)
        assert cols.min() >= 12 and cols.max() <= 16 and rows.max() - rows.min() >= 18  # one centred vertical bar


def test_a_path_that_cannot_be_looked_at_is_one_files_error(tmp_path, real_model_dir):
    """``is_dir`` raises for a name too long (and for a folder one may not search): it was a crash of the whole
    run; now reading the path reports why, and the other files are still read."""
    hand_drawn(7, tmp_path / "seven.png")
    long_name = tmp_path / ("a" * 300 + ".png")
    with TrainedModel(real_model_dir[0]) as model:
        too_long, seven = predict_files([long_name, tmp_path], model)
    assert too_long.error == f"{long_name}: cannot open (File name too long)" and too_long.digit is None
    assert seven.error is None and seven.digit == 7


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_folders_that_cannot_be_listed_or_searched_are_reported_file_by_file(tmp_path, real_model_dir):
    hand_drawn(7, tmp_path / "seven.png")
    unlistable, unsearchable = tmp_path / "noread", tmp_path / "noexec"
    unlistable.mkdir()
    unsearchable.mkdir()
    hand_drawn(1, unsearchable / "one.png")
    unlistable.chmod(0o300)
    unsearchable.chmod(0o444)
    try:
        with TrainedModel(real_model_dir[0]) as model:
            results = predict_files([unlistable, unsearchable, tmp_path / "seven.png"], model)
    finally:
        unlistable.chmod(0o700)
        unsearchable.chmod(0o700)
    assert [r.error for r in results] == [f"{unlistable}: cannot open (Permission denied)",
                                          f"{unsearchable / 'one.png'}: cannot open (Permission denied)", None]
    assert results[2].digit == 7


@needs_fifo
def test_fifos_are_skipped_in_folders_and_refused_when_named(tmp_path):
    hand_drawn(1, tmp_path / "one.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.png").mkdir()
    assert image_files([tmp_path]) == [tmp_path / "one.png"]
    outcome = []

    def load():  # a blocking open would hang here: run it where the test can give up on it
        try:
            load_grayscale(tmp_path / "pipe.png")
        except DataError as err:
            outcome.append(str(err))

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert outcome == [f"{tmp_path / 'pipe.png'}: not a regular file"]


def test_a_folders_dangling_link_is_reported_and_files_not_named_as_images_are_left_out(tmp_path, real_model_dir):
    hand_drawn(1, tmp_path / "one.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    assert image_files([tmp_path]) == [tmp_path / "gone.png", tmp_path / "one.png"]
    with TrainedModel(real_model_dir[0]) as model:
        gone, one = predict_files(image_files([tmp_path]), model)
    assert gone.digit is None and "gone.png" in gone.error and one.digit == 1


def test_predict_command_prints_each_file_and_fails_at_the_end(tmp_path, real_model_dir, cli):
    out, _ = real_model_dir
    hand_drawn(0, tmp_path / "zero.png")
    Image.new("L", (40, 40), 0).save(tmp_path / "empty.png")
    (tmp_path / "huge.png").write_bytes(png_header_only(20000, 20000))  # 60 bytes, 400 million pixels
    named = []
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.png")  # skipped inside the folder, an error when named
        named.append(str(tmp_path / "pipe.png"))
    done = cli("predict", tmp_path, *named, "--checkpoint", out, "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    results = {r["file"].rsplit("/", 1)[1]: r for r in json.loads(done.stdout)}
    assert sorted(results) == sorted(["empty.png", "huge.png", "zero.png"] + (["pipe.png"] if named else []))
    assert results["zero.png"]["digit"] == 0 and len(results["zero.png"]["top3"]) == 3
    assert results["empty.png"]["digit"] is None and "blank image" in results["empty.png"]["reason"]
    assert "image too large" in results["huge.png"]["error"]
    if named:
        assert "not a regular file" in results["pipe.png"]["error"]
    assert "lenet-tf: error:" in done.stderr and "empty.png" not in done.stderr and "huge.png" in done.stderr


def test_control_characters_in_file_names_keep_each_line_one_line(tmp_path, real_model_dir, cli):
    """A name holding a newline split its error over two lines, and a terminal escape reached the terminal."""
    folder = tmp_path / "odd"
    folder.mkdir()
    hand_drawn(7, folder / "seven\x1b[2J.png")
    (folder / "bad\nname.png").write_bytes(b"not an image")
    done = cli("predict", folder, "--checkpoint", real_model_dir[0])
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"lenet-tf: error: {folder}/bad\\nname.png: not a readable image (unknown "
                                        "format; PNG, JPEG, BMP, GIF, TIFF or WebP expected)"]
    [line] = done.stdout.splitlines()
    assert line.startswith(f"{folder}/seven\\x1b[2J.png: 7 (p=")


def test_exported_saved_model_matches_the_checkpoint_in_a_fresh_process(tmp_path, real_model_dir, real_mnist, cli):
    out, _ = real_model_dir
    export = tmp_path / "export"
    done = cli("export", "--checkpoint", out, "--out", export)
    assert done.returncode == 0, done.stderr
    np.save(tmp_path / "digits.npy", real_mnist.test_images[:500])
    script = f"""
import json, numpy as np, tensorflow as tf
model = tf.saved_model.load({str(export)!r})
serve = model.signatures["serving_default"]
digits = np.load({str(tmp_path / "digits.npy")!r})
flat = serve(images=tf.constant(digits))
channel = serve(images=tf.constant(digits[..., None]))
print(json.dumps({{"classes": flat["classes"].numpy().tolist(), "probabilities": flat["probabilities"].numpy().tolist(),
                  "same": bool((flat["classes"].numpy() == channel["classes"].numpy()).all())}}))
"""
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    served = json.loads(loaded.stdout.strip().splitlines()[-1])
    with TrainedModel(out) as model:
        expected = model.predict(real_mnist.test_images[:500])
    assert served["same"]
    assert served["classes"] == expected.classes.tolist()
    np.testing.assert_allclose(served["probabilities"], expected.probabilities, atol=1e-5)
    tool = installed_script("saved_model_cli")
    assert tool, "TensorFlow installs saved_model_cli beside its Python"
    cli = subprocess.run([tool, "show", "--dir", str(export), "--all"], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and "serving_default" in cli.stdout and "DT_UINT8" in cli.stdout


def test_a_multi_frame_file_is_classified_by_its_first_frame_with_a_note(tmp_path, real_model_dir):
    out, _ = real_model_dir
    hand_drawn(7, tmp_path / "seven.png")
    hand_drawn(1, tmp_path / "one.png")
    frames = [Image.open(tmp_path / "seven.png").convert("L"), Image.open(tmp_path / "one.png").convert("L")]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    with TrainedModel(out) as model:
        animated, still = predict_files([tmp_path / "animated.gif", tmp_path / "seven.png"], model)
    assert (animated.digit, animated.note) == (7, "2 frames: read the first")
    assert still.note is None and [c for c, _ in animated.top3] == [c for c, _ in still.top3]
    assert animated.probabilities == pytest.approx(still.probabilities, abs=0.05)
