"""Lookalikes (issue 15): every face is also scored against a cohort (the other characters, a background set of
package-shipped faces); a face closer to someone else than to the character is flagged, whatever the bound says."""

from __future__ import annotations

import numpy as np
import pytest

import evalclips as E
from conftest import save
from storyengine import cohort
from storyengine.consistency import Reference, check, references_for
from storyengine.settings import Settings


@pytest.fixture
def two(reg, ws, tmp_path, person_photos, hopper):
    from storyengine.register import register_character

    register_character(reg, ws, "mara", person_photos, kind="person", name="Mara", settings=Settings())
    g = [save(tmp_path / "g1.png", hopper), save(tmp_path / "g2.png", hopper[:, ::-1].copy())]
    register_character(reg, ws, "grace", g, kind="person", name="Grace", settings=Settings(outlier_force=True))
    return reg


def test_cohort_holds_the_other_characters_and_the_background_set_but_not_herself(two, monkeypatch):
    mara = references_for(two, "mara")[0]
    [r] = cohort.attach(two, [mara])
    names = [n for n, _ in r.cohort]
    assert names[0] == "grace"
    assert "matplotlib/grace_hopper#0" in names and "insightface/Tom_Hanks_54745.png#0" in names
    assert sum(n.startswith("insightface/t1.jpg#") for n in names) == 6
    assert not any(n.startswith("skimage/astronaut") for n in names)  # that is mara herself: left out of her cohort
    assert "nearest cohort neighbour" in r.bound_source and r.bound >= mara.bound
    # embedded once per encoder version, then read from the registry: no image is loaded or embedded again
    assert two.db["cohort"].count == 9
    monkeypatch.setattr(cohort, "_MEMO", {})
    monkeypatch.setattr(type(mara.encoder), "embed", lambda *a, **k: pytest.fail("embedded again"))
    [again] = cohort.attach(two, [mara])
    assert [n for n, _ in again.cohort] == names and all(np.allclose(a, b) for (_, a), (_, b) in zip(again.cohort, r.cohort))


def test_a_face_closer_to_another_character_is_flagged_whatever_the_bound(two, tmp_path):
    """Grace Hopper's face pasted over frames 5-10 with a permissive bound (0.5): the bound lets her through,
    the nearest-identity rule does not."""
    clip = E.write_clip(E.make_clip("swap", 16, other="hopper", span=(5, 10)), tmp_path / "swap.mp4")
    mara = references_for(two, "mara", bound=0.5)[0]
    settings = Settings(check_mode="full", detect_stride=4)
    plain = check(clip, [mara], settings=settings)
    assert plain.verdict.decision == "accept"  # the bound alone: every frame is above 0.5
    [withc] = cohort.attach(two, [mara], ["mara", "grace"], background=False)
    assert withc.bound == 0.5 and [n for n, _ in withc.cohort] == ["grace"]  # an override bound stays
    res = check(clip, [withc], settings=settings)
    flagged = sorted(s.index for s in res.scores if s.drifted)
    assert flagged == list(range(5, 11)) and {s.lookalike for s in res.scores if s.drifted} == {"grace"}
    assert all(s.lookalike is None for s in res.scores if s.index not in range(5, 11))
    assert res.verdict.decision == "reject" and "closer to grace than to the character in 6 frame(s)" in res.verdict.reason


def test_cohort_bound_rises_above_the_nearest_neighbour_but_not_above_her_own_photos():
    from storyengine.plugins import get_encoder

    enc = get_encoder("dlib-face", Settings())
    own = np.eye(4, dtype=np.float32)[:2] * 0.0
    own[0, :2] = [1.0, 0.0]
    own[1, :2] = [0.96, 0.28]  # own photos 0.96 apart
    r = Reference("x", enc, own, own.mean(axis=0), 0.91, "derived")
    near = np.array([[0.93, 0.0, 0.3676, 0.0]], dtype=np.float32)  # 0.93 to her first photo
    b, src = cohort.cohort_bound(r, [("lookalike", near)])
    assert b == pytest.approx(0.94) and "nearest cohort neighbour lookalike 0.930 → bound raised to 0.940" in src
    closer = np.array([[0.99, 0.0, 0.141, 0.0]], dtype=np.float32)
    b, _ = cohort.cohort_bound(r, [("twin", closer)])
    assert b == pytest.approx(0.95)  # capped at her own least similar pair (0.96) minus the margin
