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
    assert sum(n.startswith("skimage/lfw_subset#") for n in names) == 100  # 100 LFW crops, one face each
    assert two.db["cohort"].count == 109
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


# ---------------------------------------------------------------- a stranger lookalike and the background set
@pytest.fixture(scope="module")
def group():
    """Two similar-looking men of insightface's group photo t1.jpg (faces 3 and 4 left to right, crops with margin)."""
    from PIL import Image

    from storyengine.plugins import get_encoder

    enc = get_encoder("dlib-face", Settings())
    t1 = np.asarray(Image.open(E.insightface_images() / "t1.jpg").convert("RGB"))
    boxes = sorted((b for b, _ in enc.detect(t1)), key=lambda b: b[0])
    out = []
    for x0, y0, x1, y1 in boxes[3:5]:
        m = (x1 - x0) // 2
        out.append(np.ascontiguousarray(t1[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m]))
    return enc, out


def test_a_stranger_lookalike_is_flagged_by_the_background_bound_while_her_own_variants_pass(group, tmp_path):
    """t1-4 is the character (original, mirror, re-lit crop); t1-3, 0.913 to her photos, is a stranger: in neither
    the series nor the background. The bound alone lets him through; the LFW background faces raise her bound above
    her nearest neighbour, which flags him, while her rotated, re-lit, re-white-balanced, JPEG and animated frames pass."""
    import cv2

    from storyengine.backends.motion import MotionBackend
    from storyengine.consistency import derive_bound
    from storyengine.encoders.base import l2n
    from storyengine.specs import CharacterRef, ShotPlan

    enc, (him, her) = group

    def vec(img):  # as eval_checker embeds: a face too small for the detector is looked for at twice the size
        dets = enc.embed(np.ascontiguousarray(img)) or enc.embed(cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
        assert dets, "no face found"
        return max(dets, key=lambda d: d.area).vector

    relit = np.clip(her[her.shape[0] // 20:, her.shape[1] // 20:].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
    own = np.stack([vec(her), vec(her[:, ::-1]), vec(relit)])
    b, src = derive_bound(enc, own)
    plain = Reference("t1-4", enc, own, l2n(own.mean(axis=0)), b, src)
    stranger = vec(him)
    assert 0.910 <= plain.similarity(stranger) < 0.92 and b == pytest.approx(0.91)
    assert plain.judge(stranger) == (False, None)  # the bound alone: the lookalike passes

    bg = cohort.background_vectors(None, enc)
    assert sum(n.startswith("skimage/lfw_subset#") for n, _ in bg) == 100
    co = [(n, v) for n, v in bg if not cohort.is_herself(own, v, enc) and not cohort.is_herself(stranger[None, :], v, enc)]
    assert len(co) == len(bg) - 2  # her own face and his face of t1.jpg are out: he is a stranger
    r = cohort.with_cohort(plain, co)
    assert r.bound == pytest.approx(0.941, abs=0.002) and "skimage/lfw_subset#" in r.bound_source
    assert r.judge(stranger)[0] and r.similarity(stranger) < r.bound

    h, w = her.shape[:2]
    f = her.astype(np.float32)
    _, jpg = cv2.imencode(".jpg", her[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 25])
    variants = {f"rot {d}": cv2.warpAffine(her, cv2.getRotationMatrix2D((w / 2, h / 2), d, 1.0), (w, h),
                                           borderMode=cv2.BORDER_REFLECT) for d in (-12, -6)}  # +6, +12: no face found
    variants.update({"relit x0.6": f * 0.6, "relit x1.4": f * 1.4, "cool WB": f * [0.8, 0.95, 1.25],
                     "jpeg 25": cv2.imdecode(jpg, cv2.IMREAD_COLOR)[:, :, ::-1]})
    still = save(tmp_path / "her.png", her)
    plan = ShotPlan(series="s", episode_id="e1", shot_id="a", index=0, still=str(still),
                    characters=[CharacterRef(handle="t1-4", name="T", kind="person")],
                    prompt="he turns his head left, then smiles", seed=1, fps=24, width=320, height=240,
                    num_frames=12, duration=0.5, min_frames=1, backend="motion")
    frames = list(MotionBackend().generate(plan).frames)
    variants.update({f"animated f{i}": frames[i] for i in (3, 7, 11)})
    sims = {}
    for k, img in variants.items():
        v = vec(np.clip(img, 0, 255).astype(np.uint8))
        sims[k] = r.similarity(v)
        assert r.judge(v) == (False, None), f"{k}: {sims[k]:.3f} < {r.bound:.3f} or closer to {r.nearest_other(v)}"
    assert min(sims.values()) > r.bound + 0.02  # her own frames pass with room to spare


def test_every_background_source_is_documented_and_can_be_chosen():
    from pathlib import Path

    from storyengine.plugins import get_encoder

    doc = (Path(__file__).resolve().parents[1] / "docs" / "encoders.md").read_text()
    for s in cohort.BACKGROUND:
        assert f"| `{s.name}` |" in doc, f"{s.name} is not in docs/encoders.md's table of background sources"
        assert "public domain" in s.licence or "no separate image licence stated" in s.licence, s.name
    assert cohort.LFW_SOURCES == ("skimage/lfw_subset",) and "skimage/lfw_subset" not in cohort.PACKAGE_PHOTOS
    enc = get_encoder("dlib-face", Settings())
    photos = cohort.background_vectors(None, enc, sources=cohort.PACKAGE_PHOTOS)
    assert len(photos) == 9 and not any(n.startswith("skimage/lfw_subset") for n, _ in photos)
    assert all(v.shape == (1, 128) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-4 for _, v in photos)


def test_the_shipped_crop_vectors_are_what_the_checker_computes_and_only_used_for_the_same_crops():
    """The LFW crops' vectors ship with the package (10 s of one core saved per fresh workspace); they must be
    the checker's own computation (a sample re-embedded here), and are refused for other crops or encoders."""
    from storyengine.encoders.dlib_face import DlibFaceEncoder

    enc = DlibFaceEncoder()
    src = next(s for s in cohort.BACKGROUND if s.name == "skimage/lfw_subset")
    crops = src.load()
    shipped = cohort.shipped_vectors(enc, src.name, crops)
    assert shipped is not None and len(shipped) == 100
    pick = [0, 33, 67, 99]
    fresh = cohort._embed_crops(enc, crops[pick])
    for i, v in zip(pick, fresh):
        assert float(shipped[i] @ v) > 0.99999
    other = crops.copy()
    other[0, 0, 0] ^= 1  # another scikit-image's crops: computed here, not taken from the file
    assert cohort.shipped_vectors(enc, src.name, other) is None

    class Renamed(DlibFaceEncoder):
        version = "resnet_v2"

    assert cohort.shipped_vectors(Renamed(), src.name, crops) is None
