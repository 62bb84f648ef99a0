"""MotionBackend: the weight-free photo-motion back-end (deterministic, lazy, no borders, no flicker)."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from storyengine.backends.base import Clip
from storyengine.backends.motion import MotionBackend, cover_fit
from storyengine.specs import CharacterRef, ShotPlan

W, H, N = 192, 108, 24


@pytest.fixture(scope="module")
def still_path(tmp_path_factory) -> str:
    """A 4:3 textured still (no black anywhere), so cover-fit must crop and motion is measurable."""
    rng = np.random.default_rng(7)
    noise = cv2.GaussianBlur(rng.random((300, 400)).astype(np.float32), (0, 0), 3.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    img = np.stack([60 + 150 * noise, 80 + 120 * noise[::-1], 70 + 140 * noise[:, ::-1]], axis=-1)
    cv2.circle(img, (200, 150), 60, (230, 190, 160), -1)  # a "subject" in the middle
    path = tmp_path_factory.mktemp("still") / "still.png"
    Image.fromarray(img.astype(np.uint8)).save(path)
    return str(path)


def plan(still: str, seed: int = 3, n: int = N, chars: int = 1, **options) -> ShotPlan:
    return ShotPlan(
        series="s", episode_id="e1", shot_id="a", index=0, still=still,
        characters=[CharacterRef(handle=f"c{i}", name=f"C{i}", kind="person") for i in range(chars)],
        prompt="", seed=seed, fps=24, width=W, height=H, num_frames=n, duration=n / 24, min_frames=1,
        backend="motion", backend_options=options,
    )


def frames(clip: Clip) -> list[np.ndarray]:
    return list(clip.frames)


def test_clip_shape_and_lazy_frames(still_path):
    done = []
    clip = MotionBackend().generate(plan(still_path), progress=lambda i, n: done.append((i, n)))
    assert isinstance(clip.frames, types.GeneratorType)  # lazy: nothing rendered yet
    assert (clip.fps, clip.width, clip.height, clip.num_frames) == (24, W, H, N)
    fs = frames(clip)
    assert len(fs) == N
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in fs)
    assert done[-1] == (N, N) and len(done) == N
    assert clip.meta["backend"] == "motion" and clip.meta["version"] == "2" and clip.meta["seed"] == 3
    assert clip.meta["options"]["push"] == [0.04, 0.10]


def test_class_attributes():
    assert MotionBackend.backend_id == "motion"
    assert MotionBackend.digital_source_type.endswith("/digitalsourcetype/algorithmicMedia")
    assert not MotionBackend.supports_lora and not MotionBackend.supports_reference_images
    assert MotionBackend.max_characters is None


def test_same_seed_is_byte_identical_other_seed_differs(still_path):
    a = frames(MotionBackend().generate(plan(still_path, seed=11)))
    b = frames(MotionBackend().generate(plan(still_path, seed=11)))
    c = frames(MotionBackend().generate(plan(still_path, seed=12)))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.abs(a[-1].astype(int) - c[-1].astype(int)).mean() > 1.0


def test_motion_is_real_but_smooth(still_path):
    fs = [f.astype(np.int16) for f in frames(MotionBackend().generate(plan(still_path, grain=0.0)))]
    overall = np.abs(fs[0] - fs[-1]).mean()
    steps = [np.abs(fs[i] - fs[i + 1]).mean() for i in range(len(fs) - 1)]
    assert overall > 4.0, overall  # the camera really moved
    assert max(steps) < 2.5, max(steps)  # …smoothly: no jump, no flicker
    assert max(steps) < overall / 3


def test_first_frame_is_the_still_framing(still_path):
    first = next(MotionBackend().generate(plan(still_path, seed=5, push_out=0.0, grain=0.0)).frames)
    ref = cover_fit(np.asarray(Image.open(still_path).convert("RGB")), W, H)
    # the still, cropped by the overscan (4 %) and resampled: close to the cover-fitted still
    centre = (slice(H // 4, 3 * H // 4), slice(W // 4, 3 * W // 4))
    assert np.abs(first[centre].astype(int) - ref[centre].astype(int)).mean() < 12


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_never_shows_a_border(still_path, seed):
    opts = dict(push=(0.1, 0.1), pan=0.2, sway=4.0, grain=0.0)
    for f in frames(MotionBackend().generate(plan(still_path, seed=seed, n=12, **opts))):
        for edge in (f[0], f[-1], f[:, 0], f[:, -1]):
            assert edge.min() > 25  # the still has no pixel below ~55; black would be a border


def test_options_refuse_unknown_keys(still_path):
    with pytest.raises(ValidationError, match="zoom"):
        MotionBackend({"zoom": 0.1})
    with pytest.raises(ValidationError):
        MotionBackend().generate(plan(still_path, wobble=1))
    with pytest.raises(ValidationError, match="push"):
        MotionBackend({"push": (0.2, 0.1)})


def test_light_drift_is_subtle(still_path):
    quiet = dict(push=(0.0, 0.0), pan=0.0, sway=0.0, grain=0.0, light=0.05, light_band=0.0)
    fs = frames(MotionBackend().generate(plan(still_path, seed=4, **quiet)))
    m0, m1 = fs[0].astype(float).mean(axis=(0, 1)), fs[-1].astype(float).mean(axis=(0, 1))
    rel = np.abs(m1 / m0 - 1.0)
    assert rel.max() > 0.01  # the light changed…
    assert rel.max() < 0.06  # …by a few percent at most


def test_sway_moves_only_the_subject(still_path):
    quiet = dict(push=(0.0, 0.0), pan=0.0, grain=0.0, light=0.0, light_band=0.0, sway=3.0, detect_faces=False)
    fs = [f.astype(np.int16) for f in frames(MotionBackend().generate(plan(still_path, seed=2, n=48, **quiet)))]
    diff = np.abs(fs[0] - fs[-1]).mean(axis=2)
    centre = diff[H // 4: 3 * H // 4, W // 3: 2 * W // 3].mean()
    corners = np.mean([diff[:10, :10].mean(), diff[:10, -10:].mean()])
    assert centre > 0.5 and centre > 3 * corners


def test_cover_fit_crops_to_the_aspect():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # a white centre square in a black 2:1 image
    out = cover_fit(img, 64, 64)
    assert out.shape == (64, 64, 3)
    assert out[:, 2:-2].min() > 200  # only the centre square is kept


def test_a_layered_still_is_used_as_given_and_moves_with_parallax(tmp_path):
    """A still with a ``<stem>.matte.png`` subject layer: an orbit moves subject and background apart."""
    from storyengine.backends.motion.layers import matte_path
    from storyengine.cache import backend_identity

    rng = np.random.default_rng(3)
    bg = cv2.GaussianBlur(rng.random((216, 384)).astype(np.float32), (0, 0), 2.0)
    img = np.repeat(((bg - bg.min()) / (bg.max() - bg.min()) * 120 + 60)[..., None], 3, axis=2)
    matte = np.zeros((216, 384), np.uint8)
    cv2.circle(matte, (192, 120), 50, 255, -1)
    img[matte > 0] = (230, 60, 40)  # a red subject on grey texture
    still = tmp_path / "layered.png"
    Image.fromarray(img.astype(np.uint8)).save(still)
    Image.fromarray(matte).save(matte_path(still))
    p = plan(str(still), n=24, grain=0.0, light=0.0, parallax=0.08, detect_faces=False).model_copy(update={"prompt": "orbit left"})
    clip = MotionBackend().generate(p)
    fs = list(clip.frames)
    assert clip.meta["motion"]["layers"] == "given"

    def red_x(f):
        ys, xs = np.nonzero((f[..., 0] > 180) & (f[..., 1] < 120))
        return xs.mean()
    (bg_shift, _), _ = cv2.phaseCorrelate(cv2.cvtColor(fs[0], cv2.COLOR_RGB2GRAY)[:, :40].astype(np.float32),
                                          cv2.cvtColor(fs[-1], cv2.COLOR_RGB2GRAY)[:, :40].astype(np.float32))
    subject_shift = red_x(fs[-1]) - red_x(fs[0])
    assert abs(subject_shift - bg_shift) > 3.0, (subject_shift, bg_shift)  # parallax, in output pixels
    # the matte is part of the take's cache key
    b = MotionBackend()
    before = backend_identity(b, p)
    Image.fromarray(255 - matte).save(matte_path(still))
    assert backend_identity(b, p)["matte"] != before["matte"]
