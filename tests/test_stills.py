"""Procedural demo stills: size, a face dlib can find, the hour's colour temperature, soft cut-out edges."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from storyengine.demo.stills import MIN_FACE_AT_360, compose_still, cutout, demo_sources, source_from_array


@pytest.fixture(scope="module")
def sources():
    return demo_sources()


@pytest.fixture(scope="module")
def detector():
    import dlib

    return dlib.get_frontal_face_detector()


@pytest.fixture(scope="module")
def pair(sources, tmp_path_factory):
    """The same medium shot of the recurring person, morning and evening, at the demo's size."""
    d = tmp_path_factory.mktemp("stills")
    out = {}
    for tod in ("morning", "evening"):
        meta = compose_still(d / f"{tod}.png", people=[sources["person"]], time_of_day=tod, framing="medium", seed=1)
        out[tod] = (meta, np.asarray(Image.open(meta["path"]).convert("RGB")))
    return out


def test_demo_sources_are_bundled(sources):
    assert set(sources) == {"person", "pet", "impostor"}
    assert sources["person"].image.shape == (512, 512, 3)
    assert sources["person"].face == (175, 76, 265, 166)
    assert sources["pet"].kind == "pet"
    assert all(s.credit for s in sources.values())


def test_still_has_requested_size_and_metadata(pair):
    meta, img = pair["morning"]
    assert img.shape == (360, 640, 3)
    assert meta["size"] == [640, 360] and meta["framing"] == "medium" and meta["time_of_day"] == "morning"
    (person,) = meta["subjects"]
    assert person["name"] == "eileen" and person["kind"] == "person"
    x0, y0, x1, y1 = person["box"]
    assert 0 <= x0 < x1 <= 640 and 0 < y0 < y1 == 360  # headroom above, cut by the frame's bottom


@pytest.mark.parametrize("tod", ["morning", "evening"])
def test_dlib_finds_the_face_at_the_expected_size(pair, detector, tod):
    meta, img = pair[tod]
    rects = detector(img, 0)  # no upsampling: the face must be big enough on its own
    assert len(rects) == 1
    r = rects[0]
    fx0, fy0, fx1, fy1 = meta["subjects"][0]["face"]
    assert r.height() >= 100 and fy1 - fy0 >= MIN_FACE_AT_360
    assert abs((r.left() + r.right()) / 2 - (fx0 + fx1) / 2) < 20
    assert abs((r.top() + r.bottom()) / 2 - (fy0 + fy1) / 2) < 20


def test_morning_is_cooler_than_evening(pair):
    def r_over_b(img):
        return img[..., 0].astype(float).mean() / img[..., 2].astype(float).mean()

    morning, evening = r_over_b(pair["morning"][1]), r_over_b(pair["evening"][1])
    assert morning < 1.05 and evening > 1.25 and evening - morning > 0.3


def test_cutout_edge_is_feathered(sources):
    rgb, alpha = cutout(sources["person"])
    assert rgb.shape == (512, 512, 3) and alpha.shape == (512, 512)
    partial = (alpha > 0.05) & (alpha < 0.95)
    assert partial.sum() > 500  # a soft ramp all round the outline, not a hard step
    assert alpha[120, 220] > 0.99 and alpha[40, 60] < 0.01  # face in, flag out
    assert alpha[100, 470] < 0.01  # the shuttle model out


def test_cutout_is_deterministic(sources):
    from storyengine.demo.stills import _cutout_cached

    a = cutout(sources["impostor"])[1]
    _cutout_cached.cache_clear()
    b = cutout(sources["impostor"])[1]
    assert np.array_equal(a, b)


def test_small_still_with_pet_and_impostor(sources, tmp_path):
    meta = compose_still(tmp_path / "s.png", people=[sources["impostor"]], pet=sources["pet"],
                         time_of_day="evening", framing="wide", seed=3, size=(320, 180))
    img = np.asarray(Image.open(tmp_path / "s.png"))
    assert img.shape == (180, 320, 3)
    kinds = [s["kind"] for s in meta["subjects"]]
    assert kinds == ["person", "pet"]
    face = meta["subjects"][0]["face"]
    assert face[3] - face[1] >= MIN_FACE_AT_360 / 2  # the face rule scales with the height


def test_bad_arguments_are_named(sources):
    with pytest.raises(ValueError, match="time_of_day"):
        compose_still(None, people=[sources["person"]], time_of_day="noon")
    with pytest.raises(ValueError, match="size"):
        compose_still(None, people=[sources["person"]], size=(641, 360))
    nobody = source_from_array("wall", np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(ValueError, match="no face box"):
        compose_still(None, people=[nobody])
