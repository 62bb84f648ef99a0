"""The animator on a real portrait (scikit-image's NASA portrait): measured from dlib's landmarks on the output.

Blinks are counted by eye aspect ratio, the head's yaw is the nose's offset from the eyes over the
inter-ocular distance, and the drift checker must accept the animated take of the character's own still.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from storyengine import media
from storyengine.backends.motion import MotionBackend
from storyengine.backends.motion.face import detect_landmarks, eye_aspect_ratio, head_yaw, mouth_width
from storyengine.specs import CharacterRef, ShotPlan

W, H, FPS = 320, 180, 24


@pytest.fixture(scope="module")
def portrait(tmp_path_factory) -> str:
    from skimage import data

    path = tmp_path_factory.mktemp("portrait") / "astronaut.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[:300, 40:440])).save(path)
    return str(path)


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> str:
    """A still with no face: scikit-image's coffee cup photo."""
    from skimage import data

    path = tmp_path_factory.mktemp("landscape") / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    return str(path)


def plan(still: str, prompt: str, n: int = 36, seed: int = 1, **options) -> ShotPlan:
    return ShotPlan(series="s", episode_id="e1", shot_id="a", index=0, still=still,
                    characters=[CharacterRef(handle="mara", name="Mara", kind="person")], prompt=prompt, seed=seed,
                    fps=FPS, width=W, height=H, num_frames=n, duration=n / FPS, min_frames=1, backend="motion",
                    backend_options=options)


_RENDERS: dict = {}


def render(still: str, prompt: str, n: int = 36, seed: int = 1, **options) -> list[np.ndarray]:
    key = (still, prompt, n, seed, repr(sorted(options.items())))
    if key not in _RENDERS:
        _RENDERS[key] = list(MotionBackend().generate(plan(still, prompt, n, seed, **options)).frames)
    return _RENDERS[key]


def measures(frames: list[np.ndarray]) -> list[tuple[float, float, float]]:
    out = []
    for f in frames:
        pts = detect_landmarks(f, 1)
        assert pts, "the face must stay detectable in every frame"
        out.append((eye_aspect_ratio(pts[0]), head_yaw(pts[0]), mouth_width(pts[0])))
    return out


def blinks(ears: list[float]) -> int:
    """Runs of frames whose eye aspect ratio falls below 70 % of the shot's median."""
    thr = 0.7 * float(np.median(ears))
    closed = [e < thr for e in ears]
    return sum(1 for i, c in enumerate(closed) if c and (i == 0 or not closed[i - 1]))


def test_blinks_where_asked_and_not_where_not(portrait):
    asked = measures(render(portrait, "static camera. she blinks twice", n=48))
    assert blinks([m[0] for m in asked]) == 2
    assert min(m[0] for m in asked) < 0.7 * float(np.median([m[0] for m in asked]))  # the lids really close
    quiet = measures(render(portrait, "static camera. she smiles"))
    assert blinks([m[0] for m in quiet]) == 0


@pytest.mark.parametrize("direction,sign", [("left", -1), ("right", 1)])
def test_head_turns_the_asked_way(portrait, direction, sign):
    m = measures(render(portrait, f"static camera. she turns her head to the {direction}"))
    change = m[-1][1] - m[0][1]
    assert sign * change > 0.05, change  # nose offset over inter-ocular distance


def test_smile_widens_the_mouth(portrait):
    m = measures(render(portrait, "static camera. she smiles"))
    assert m[-1][2] / m[0][2] > 1.06


def test_static_camera_keeps_the_borders_still(portrait):
    fs = [f.astype(np.float32) for f in render(portrait, "static camera. she blinks twice, then turns her head to the left and smiles")]

    def border(f):
        return np.concatenate([f[:6].ravel(), f[-6:].ravel(), f[:, :6].ravel(), f[:, -6:].ravel()])
    diffs = [np.abs(border(f) - border(fs[0])).mean() for f in fs[1:]]
    assert max(diffs) < 2.0, max(diffs)
    # …while the camera the seed draws without a camera word does move them
    moving = [f.astype(np.float32) for f in render(portrait, "she blinks twice", seed=3)]
    assert np.abs(border(moving[-1]) - border(moving[0])).mean() > 2.0


def test_same_prompt_and_seed_identical_other_prompt_differs(portrait):
    p = "she glances right, then nods"
    a = list(MotionBackend().generate(plan(portrait, p, n=12)).frames)
    b = list(MotionBackend().generate(plan(portrait, p, n=12)).frames)
    c = list(MotionBackend().generate(plan(portrait, "she glances left, then smiles", n=12)).frames)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert max(np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, c)) > 0.2


def test_mood_grade_is_baked_into_the_take(portrait):
    from storyengine.finishing import mood_baked, mood_options

    opts = mood_options("warm", "motion", {})
    assert opts["mood"] == "warm" and mood_baked("motion") and not mood_baked("wan")
    plain = render(portrait, "static camera", n=2, grain=0.0)[0].astype(np.float32).mean(axis=(0, 1))
    warm = render(portrait, "static camera", n=2, grain=0.0, **opts)[0].astype(np.float32).mean(axis=(0, 1))
    # warm: brighter, redder, less blue
    assert warm[0] / warm[2] > 1.08 * plain[0] / plain[2]
    assert warm.mean() > plain.mean()
    with pytest.raises(ValidationError, match="option `mood` = 'sad' is not a mood"):
        MotionBackend({"mood": "sad"})


def test_checker_accepts_the_animated_take(portrait, tmp_path):
    import evalclips as E
    from storyengine.consistency import Reference, check, derive_bound
    from storyengine.encoders.base import l2n
    from storyengine.plugins import get_encoder
    from storyengine.settings import Settings

    enc = get_encoder("dlib-face")
    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    bound, src = derive_bound(enc, vecs)
    ref = Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), bound, src)
    path = tmp_path / "take.mp4"
    fs = render(portrait, "she blinks twice, then turns her head to the left and smiles")
    with media.VideoWriter(path, W, H, FPS, crf=18, preset="veryfast") as w:
        for f in fs:
            w.write(f)
    res = check(path, [ref], settings=Settings(detect_stride=4))
    assert res.verdict.decision == "accept", res.verdict.reason
    assert res.verdict.summaries[0].min >= ref.bound


def test_a_faceless_still_gets_camera_and_light_motion(landscape):
    p = plan(landscape, "she blinks twice and turns her head to the left, push in", n=24, grain=0.0)
    described = MotionBackend.describe_motion(p)
    assert described["faces"] == 0
    assert described["skipped"] == ["blink twice", "turn head left"]
    assert "no face found in the still: face motions skipped" in described["notes"][0]
    clip = MotionBackend().generate(p)
    fs = [f.astype(np.float32) for f in clip.frames]
    assert clip.meta["motion"]["faces"] == 0 and clip.meta["motion"]["blinks"] == []
    assert np.abs(fs[-1] - fs[0]).mean() > 3.0  # the camera pushed in
    steps = [np.abs(fs[i + 1] - fs[i]).mean() for i in range(len(fs) - 1)]
    assert max(steps) < 2.0 * float(np.mean(steps))  # smoothly: an eased move, no jump


def test_amplitude_options_are_range_checked():
    for name, value, rng in [("amplitude", 5.0, "between 0 and 2"), ("turn_degrees", 45, "between 0 and 15"),
                             ("blink_ms", 50, "between 100 and 300"), ("sway", -1, "between 0 and 4")]:
        with pytest.raises(ValidationError) as e:
            MotionBackend({name: value})
        assert f"option `{name}` = {value!r} is out of range: it must be {rng}" in str(e.value)


def test_soften_makes_the_retry_move_less(portrait):
    from storyengine.shots import _softened

    b = MotionBackend()
    opts, note = b.soften({"turn_degrees": 10.0}, 1)
    assert opts["amplitude"] == 0.6 and "motion amplitude reduced to 0.60 (from 1.00; head turns 6.0°)" in note
    assert b.soften({"amplitude": 0.6}, 2)[0]["amplitude"] == pytest.approx(0.216)
    p = plan(portrait, "she turns her head to the right")
    assert _softened(b, p, 0) == (p, "")
    q, note = _softened(b, p, 1)
    assert q.backend_options["amplitude"] == 0.6 and note
    full = measures(render(portrait, "static camera. she turns her head to the right"))
    soft = measures(render(portrait, "static camera. she turns her head to the right", amplitude=0.6))
    assert 0.3 < (soft[-1][1] - soft[0][1]) / (full[-1][1] - full[0][1]) < 0.85
