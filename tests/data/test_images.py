"""Files read as the user sees them: real files written by PIL in the forms phones, scanners and editors write,
each prepared like MNIST and compared with the same drawing saved as a plain 8-bit grey PNG."""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from lenet_tf.core.errors import DataError
from lenet_tf.data.images import PAPER_BORDER, UNEVEN_LIGHT, _lighting, flattened, load_picture, to_mnist

SIZE = 112


def seven() -> np.ndarray:
    """A hand-drawn 7 (asymmetric: a rotated or mirrored copy is not a 7), ink 1.0 on paper 0.0, [SIZE, SIZE]."""
    image = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(image).line([(30, 24), (82, 24), (46, 92)], fill=255, width=11, joint="curve")
    return np.asarray(image, np.float32) / 255.0


def reference() -> np.ndarray:
    """The drawing as an ordinary 8-bit file would give it: dark ink on white paper, prepared like MNIST."""
    return to_mnist(255.0 * (1.0 - seven()))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def prepared(path) -> np.ndarray:
    picture = load_picture(path)
    assert picture.note is None
    return to_mnist(picture.gray, str(path))


@pytest.mark.parametrize("orientation, stored_as", [
    (6, Image.Transpose.ROTATE_90),    # the phone held upright: the viewer rotates 90° clockwise
    (8, Image.Transpose.ROTATE_270),
    (3, Image.Transpose.ROTATE_180),
])
def test_exif_orientation_is_applied(tmp_path, orientation, stored_as):
    upright = Image.fromarray(np.uint8(255 * (1 - seven())))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    path = tmp_path / "photo.jpg"
    upright.transpose(stored_as).convert("RGB").save(path, quality=95, exif=exif.tobytes())
    sideways = to_mnist(np.asarray(Image.open(path).convert("L"), np.float32))
    assert similarity(prepared(path), reference()) > 0.97
    assert similarity(sideways, reference()) < 0.7  # the stored pixels alone are another picture


def test_grey_16_bit_scan_is_scaled_not_clipped(tmp_path):
    # Paper at 45,000 and ink at 20,000 of 65,535: clipped at 255 this was all white, "blank".
    levels = np.uint16(45000 - 25000 * seven())
    path = tmp_path / "scan16.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I;16")
    assert similarity(prepared(path), reference()) > 0.99


def test_32_bit_integer_tiff_is_stretched_to_its_range(tmp_path):
    levels = np.int32(3_000_000 - 2_500_000 * seven())  # counts beyond 16 bits
    path = tmp_path / "scan32.tif"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode == "I"
    assert similarity(prepared(path), reference()) > 0.99


@pytest.mark.parametrize("paper, ink", [(1.0, 0.0), (0.8, 0.45), (0.0, 1.0)])
def test_float_tiff_in_0_to_1_is_read(tmp_path, paper, ink):
    path = tmp_path / "float.tif"
    Image.fromarray(np.float32(paper + (ink - paper) * seven())).save(path)
    assert Image.open(path).mode == "F"
    assert similarity(prepared(path), reference()) > 0.99


def test_a_lab_tiff_is_read_by_its_lightness(tmp_path):
    """PIL converts LAB to no other mode: such a scan was refused ("conversion from LAB to RGB not supported")."""
    from PIL import ImageCms

    rgb = Image.fromarray(np.uint8(255 * (1 - seven()))).convert("RGB")
    to_lab = ImageCms.buildTransformFromOpenProfiles(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"),
                                                     "RGB", "LAB")
    path = tmp_path / "lab.tif"
    ImageCms.applyTransform(rgb, to_lab).save(path)
    assert Image.open(path).mode == "LAB"
    assert similarity(prepared(path), reference()) > 0.99


def test_nan_in_a_float_tiff_is_refused_in_one_line(tmp_path):
    values = np.float32(1 - seven())
    values[0, 0] = np.nan
    path = tmp_path / "nan.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(DataError, match="NaN or infinite") as err:
        load_picture(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("side", [40, 2000])  # 2000: reduced to the working side, where a sum of huge values
def test_a_float_tiff_spanning_float32s_whole_range_is_read(tmp_path, side):  # overflowed
    values = np.full((side, side), -3e38, np.float32)  # its span overflowed float32: no digit, a crash
    block = side // 40
    values[10 * block:30 * block, 18 * block:22 * block] = 3e38
    path = tmp_path / "huge.tif"
    Image.fromarray(values).save(path)
    digit = to_mnist(load_picture(path).gray)
    rows, cols = np.nonzero(digit > 64)
    assert rows.max() - rows.min() >= 18 and cols.max() - cols.min() <= 8  # one upright bar, light on dark


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (200, 30, 30), (128, 128, 128)])
@pytest.mark.parametrize("hidden", [(255, 255, 255), (0, 0, 0)])
def test_a_digit_on_a_transparent_background_stays_visible_whatever_its_colour(tmp_path, colour, hidden):
    """The colour under the transparent pixels is arbitrary (editors write black or white there)."""
    alpha = np.uint8(255 * seven())
    rgb = np.where(alpha[..., None] > 0, np.uint8(colour), np.uint8(hidden))
    path = tmp_path / "transparent.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    assert similarity(prepared(path), reference()) > 0.99


def test_transparent_corners_of_an_opaque_picture_become_its_paper(tmp_path):
    """A dark picture (light digit on black) with transparent rounded corners: the corners are no ink."""
    gray = np.uint8(255 * seven())
    alpha = np.full_like(gray, 255)
    corner = np.add.outer(np.arange(SIZE) - SIZE / 2, np.zeros(SIZE)) ** 2
    alpha[np.sqrt(corner + corner.T) > 0.68 * SIZE] = 0
    path = tmp_path / "rounded.png"
    Image.fromarray(np.dstack([gray, gray, gray, alpha])).save(path)
    assert similarity(prepared(path), reference()) > 0.99


def test_a_digit_cut_out_of_an_opaque_sheet(tmp_path):
    """The strokes are transparent holes in a sheet of one colour: the alpha is all there is."""
    alpha = np.uint8(255 * (1 - seven()))
    path = tmp_path / "stencil.png"
    Image.fromarray(np.dstack([np.full((SIZE, SIZE, 3), 40, np.uint8), alpha])).save(path)
    assert similarity(prepared(path), reference()) > 0.99


def test_an_opaque_picture_with_an_alpha_channel_is_read_from_its_colours(tmp_path):
    """A small digit (under 1% of the pixels) in an RGBA file whose alpha is opaque everywhere."""
    canvas = Image.new("RGBA", (400, 400), "white")
    canvas.paste(Image.fromarray(np.uint8(255 * (1 - seven()))).resize((28, 28), Image.LANCZOS), (150, 200))
    path = tmp_path / "opaque.png"
    canvas.save(path)
    assert similarity(prepared(path), reference()) > 0.9


def test_a_palette_gif_with_a_transparent_index(tmp_path):
    image = Image.fromarray(np.uint8(255 * seven())).convert("P")
    path = tmp_path / "digit.gif"
    image.save(path, transparency=0)  # palette entry 0 (the black paper) is transparent
    assert similarity(prepared(path), reference()) > 0.97


@pytest.mark.parametrize("suffix", ["gif", "tif"])
def test_multi_frame_files_read_their_first_frame_and_say_so(tmp_path, suffix):
    first = Image.fromarray(np.uint8(255 * (1 - seven())))
    ones = [Image.new("L", (SIZE, SIZE), 255) for _ in range(2)]
    for x, one in zip((40, 70), ones):  # frames that differ (a GIF merges equal ones)
        ImageDraw.Draw(one).line([(x, 20), (x, 92)], fill=0, width=11)
    path = tmp_path / f"frames.{suffix}"
    first.save(path, save_all=True, append_images=ones)
    picture = load_picture(path)
    assert picture.note == "3 frames: read the first"
    assert similarity(to_mnist(picture.gray), reference()) > 0.99


def photo(paper: float, ink: float, noise: float, seed: int = 0) -> np.ndarray:
    """The drawing as a phone photo: grey paper with a lighting gradient, sensor noise, JPEG."""
    rng = np.random.default_rng(seed)
    light = np.linspace(-12, 12, SIZE)[None, :]
    levels = paper + light + (ink - paper) * seven() + rng.normal(0, noise, (SIZE, SIZE))
    return np.uint8(np.clip(levels, 0, 255))


@pytest.mark.parametrize("paper, ink, noise", [(180, 40, 20), (95, 15, 8)])  # noisy grey; dark, under-exposed
@pytest.mark.parametrize("seed", [0, 1])
def test_photos_of_grey_paper_have_the_paper_level_removed(tmp_path, paper, ink, noise, seed):
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo(paper, ink, noise, seed)).save(path, quality=60)
    digit = prepared(path)
    # As close to the drawing as the same photo without noise (0.82: the lighting and JPEG's own changes).
    assert similarity(digit, reference()) > 0.78
    # No speckle of paper was taken for ink: the digit's box is MNIST's 20 pixels.
    rows, cols = np.flatnonzero(digit.max(axis=1) > 25), np.flatnonzero(digit.max(axis=0) > 25)
    assert 19 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21


@pytest.mark.parametrize("light", [
    lambda x, y: 0.25 + 0.75 * x,                          # a side light: the left edge a quarter as bright
    lambda x, y: 1.0 - 0.6 * y,                            # a shadow over the lower half of the page
    lambda x, y: 1.0 - 0.7 * ((x - 0.5) ** 2 + (y - 0.5) ** 2),  # a vignette
    lambda x, y: np.where(x + 0.3 * y > 0.7, 0.45, 1.0),   # a hand's shadow: a hard edge beside the 7's stroke
    lambda x, y: np.where(y > 0.6, 0.5, 1.0) * (0.8 + 0.2 * x),  # a phone's hard-edged shadow under a side light
    lambda x, y: np.where((x > 0.5) & (y > 0.45), 0.6, 1.0),  # a shadow over one corner
])
def test_a_digit_under_uneven_light_is_read_as_on_even_paper(light, tmp_path):
    """Light multiplies the paper and the ink alike; the border alone cannot give one paper level for it."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    paper = 230.0 * (1.0 - seven()) + 10.0
    lit = paper * light(x, y) + np.random.default_rng(0).normal(0, 3, paper.shape)
    Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8)).save(tmp_path / "lit.png")
    assert similarity(prepared(tmp_path / "lit.png"), reference()) > 0.97


@pytest.mark.parametrize("edge", [lambda x, y: x + 0.3 * y > 0.75, lambda x, y: x - 0.3 * y > 0.45,
                                  lambda x, y: x + y > 1.2])
@pytest.mark.parametrize("share", [0.5, 0.25])
def test_a_slanted_shadow_over_a_small_digit_is_flattened_to_its_tips(edge, share):
    """A shadow's slanted edge meets the border in a narrow tip, and a small digit's ink is under 1% of the picture:
    read as on even paper all the same."""
    side, start = round(4 * SIZE * share), round(2 * SIZE * (1 - share))  # the 7 in the middle of a 448 px photo
    ink = np.zeros((4 * SIZE, 4 * SIZE))
    ink[start:start + side, start:start + side] = np.asarray(
        Image.fromarray(np.uint8(255 * seven())).resize((side, side), Image.BILINEAR)) / 255.0
    y, x = np.mgrid[0:4 * SIZE, 0:4 * SIZE] / (4 * SIZE - 1)
    paper = 230.0 * (1.0 - ink) + 10.0
    lit = paper * np.where(edge(x, y), 0.45, 1.0) + np.random.default_rng(0).normal(0, 3, paper.shape)
    shadowed = to_mnist(np.clip(lit, 0, 255).astype(np.uint8).astype(np.float32))
    assert similarity(shadowed, to_mnist(paper.astype(np.float32))) > 0.97


def test_strokes_that_run_off_the_picture_are_not_taken_for_a_shadow():
    """A tight crop: the 7's bar and stroke are 38% of the border in two stretches, but ink, not shaded paper."""
    gray = (230.0 * (1.0 - seven()[20:70, 28:84]) + 10.0).astype(np.float32)  # the bar along the top edge
    gray = ndimage.zoom(ndimage.gaussian_filter(gray, 2.0), 2, order=1)  # [100, 112], grey stroke edges
    np.testing.assert_array_equal(flattened(gray), gray)


def test_evenly_lit_paper_is_read_exactly_as_before():
    paper = (200.0 * (1.0 - seven()) + 30.0 + np.random.default_rng(1).normal(0, 2, (SIZE, SIZE))).astype(np.float32)
    np.testing.assert_array_equal(flattened(paper), paper)


@pytest.mark.parametrize("level", [255.0, 241.0, 0.0])
def test_paper_of_one_grey_all_round_is_left_as_it_is_as_the_fitted_lighting_would(level):
    """The shortcut for a border of one grey (canvases, clean scans) gives what the fit gives: a flat surface."""
    ink = seven()
    ink[0, :] = ink[-1, :] = ink[:, 0] = ink[:, -1] = 0  # only the border is one grey
    gray = (level + (128.0 if level < 128 else -200.0) * ink).astype(np.float32)
    lighting, explained = _lighting(gray)
    assert explained >= PAPER_BORDER and float(lighting.max() - lighting.min()) <= UNEVEN_LIGHT
    assert flattened(gray) is gray
