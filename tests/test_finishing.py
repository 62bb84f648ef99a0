"""Finishing: .cube LUTs on known colours, grade controls, upscale + sharpen, mood presets."""

import numpy as np
import pytest

from storyengine import finishing, specs
from storyengine.errors import BackendError, MediaError
from storyengine.finishing import Finisher, apply_grade, apply_lut, load_cube, resize, write_cube
from storyengine.specs import Finish, Grade


def solid(rgb, w=32, h=18):
    return np.full((h, w, 3), rgb, np.uint8)


def test_identity_lut_keeps_colours(tmp_path):
    lut = load_cube(write_cube(tmp_path / "id.cube", lambda x: x, size=17))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (18, 32, 3), dtype=np.uint8)
    assert np.abs(apply_lut(frame, lut).astype(int) - frame).max() <= 1


def test_channel_swap_lut_on_a_known_colour(tmp_path):
    """A LUT that maps (r, g, b) -> (b, r, g): pure red must come out green, in .cube order (red fastest)."""
    lut = load_cube(write_cube(tmp_path / "swap.cube", lambda x: x[:, [2, 0, 1]], size=9))
    out = apply_lut(solid((255, 0, 0)), lut)
    assert tuple(out[0, 0]) == (0, 255, 0)
    out = apply_lut(solid((200, 100, 50)), lut)
    assert np.abs(out[0, 0].astype(int) - (50, 200, 100)).max() <= 1
    half = apply_lut(solid((200, 100, 50)), lut, strength=0.5)
    assert np.abs(half[0, 0].astype(int) - (125, 150, 75)).max() <= 1


def test_lut_interpolates_between_grid_points(tmp_path):
    """On a 2-point grid, a gamma-like curve is interpolated trilinearly: mid-grey maps to the chord."""
    lut = load_cube(write_cube(tmp_path / "g.cube", lambda x: x ** 2, size=2))
    assert np.abs(apply_lut(solid((128, 128, 128)), lut)[0, 0].astype(int) - 128).max() <= 1  # chord of x² on [0, 1]
    lut33 = load_cube(write_cube(tmp_path / "g33.cube", lambda x: x ** 2, size=33))
    assert np.abs(int(apply_lut(solid((128, 128, 128)), lut33)[0, 0, 0]) - round(255 * (128 / 255) ** 2)) <= 2


@pytest.mark.parametrize("text, match", [
    ("LUT_3D_SIZE 2\n0 0 0\n", "needs 8 rows, found 1"),
    ("0 0 0\n", "no LUT_3D_SIZE"),
    ("LUT_1D_SIZE 4\n", "1D LUTs"),
    ("LUT_3D_SIZE 2\n0 0 x\n", r"bad.cube:2: malformed"),
])
def test_malformed_cube_is_named(tmp_path, text, match):
    p = tmp_path / "bad.cube"
    p.write_text(text)
    with pytest.raises(MediaError, match=match):
        load_cube(p)


def test_grade_controls_move_colours_the_right_way():
    grey = solid((128, 128, 128))
    assert apply_grade(grey, Grade()) is grey  # identity does no work
    assert apply_grade(grey, Grade(exposure=1.0))[0, 0, 0] == 255
    warm = apply_grade(grey, Grade(temperature=0.8))[0, 0]
    assert warm[0] > 128 > warm[2]
    flat = apply_grade(solid((200, 60, 60)), Grade(saturation=0.0))[0, 0]
    assert int(flat.max()) - int(flat.min()) <= 1
    punchy = apply_grade(solid((200, 60, 60)), Grade(contrast=1.5))[0, 0]
    assert punchy[0] > 200 and punchy[1] < 60


def test_upscale_with_sharpening_and_model_hook():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (18, 32, 3), dtype=np.uint8)
    big = resize(small, (64, 36), "lanczos")
    sharp = resize(small, (64, 36), "lanczos", sharpen=1.5)
    assert big.shape == sharp.shape == (36, 64, 3)
    edges = lambda f: np.abs(np.diff(f.astype(int), axis=1)).mean()
    assert edges(sharp) > edges(big)
    with pytest.raises(BackendError, match="'esrgan' is not registered"):
        resize(small, (64, 36), "model", upscaler="esrgan")
    finishing.register_upscaler("nearest2x", lambda f, size: f.repeat(2, 0).repeat(2, 1))
    try:
        assert (resize(small, (64, 36), "model", upscaler="nearest2x")[::2, ::2] == small).all()
    finally:
        finishing.UPSCALERS.pop("nearest2x")


def test_finisher_order_and_identity(tmp_path):
    lut = write_cube(tmp_path / "swap.cube", lambda x: x[:, [2, 0, 1]], size=5)
    f = Finisher(Finish(lut="swap.cube"), (64, 36), lut)
    out = f(solid((255, 0, 0)))
    assert out.shape == (36, 64, 3) and tuple(out[10, 10]) == (0, 255, 0)
    assert Finisher(Finish(), (32, 18)).is_identity((32, 18))
    assert not Finisher(Finish(), (64, 36)).is_identity((32, 18))


def test_moods_are_known_to_the_spec_and_scale_motion():
    assert tuple(finishing.MOODS) == specs.MOODS
    opts = finishing.mood_options("uneasy", "motion", {"sway": 1.0})
    assert opts["sway"] > 1.0 and opts["push"][1] > 0.10
    assert finishing.mood_options("distant", "wan", {"model": "x"}) == {"model": "x"}


def test_finish_spec_validation():
    with pytest.raises(ValueError, match=".cube"):
        Finish(lut="look.png")
    with pytest.raises(ValueError, match="even"):
        Finish(width=641)
    with pytest.raises(ValueError, match="upscaler"):
        Finish(resample="model")
    with pytest.raises(ValueError, match="extra"):
        Finish(sharp=1)
