"""Registration with real faces: gates refuse bad photos with file, gate and value; vectors are stored keyed by encoder."""

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import save
from PIL import Image

from storyengine.encoders.base import cosine
from storyengine.errors import RegistryError, UnsafePathError
from storyengine.images import load_rgb
from storyengine.plugins import get_encoder
from storyengine.register import face_candidates, register_character
from storyengine.settings import Settings


def test_same_face_under_augmentation_is_closer_than_another_person(astronaut, hopper):
    enc = get_encoder("dlib-face", Settings())
    a = enc.embed(astronaut)[0].vector
    flipped = enc.embed(astronaut[:, ::-1].copy())[0].vector
    darker = enc.embed(np.clip(astronaut * 0.7, 0, 255).astype(np.uint8))[0].vector
    other = enc.embed(hopper)[0].vector
    assert cosine(a, flipped) > enc.same_bound
    assert cosine(a, darker) > enc.same_bound
    assert cosine(a, other) < enc.same_bound
    assert min(cosine(a, flipped), cosine(a, darker)) - cosine(a, other) > 0.05
    assert a.shape == (128,) and abs(np.linalg.norm(a) - 1) < 1e-5


def test_register_stores_photos_and_vectors(reg, ws, person_photos):
    r = register_character(reg, ws, "mara", person_photos, kind="person", name="Mara", consent="self, 2026-11-01")
    assert len(r.accepted) == 3 and r.rejected == []
    photos = reg.photos("mara")
    assert len(photos) == 3
    for p in photos:
        f = ws.root / p["path"]
        assert f.is_file() and f.name.startswith(p["sha256"][:16])
    rows = list(reg.db["embeddings"].rows)
    assert len(rows) == 3
    assert {(r["encoder"], r["encoder_version"], r["dim"]) for r in rows} == {("dlib-face", "resnet_v1", 128)}
    assert all(r["licence"] and len(r["vector"]) == 128 * 4 and len(json.loads(r["box"])) == 4 for r in rows)
    assert reg.character("mara")["consent"] == "self, 2026-11-01"


def test_outlier_is_refused_unless_forced(reg, ws, person_photos, tmp_path, hopper):
    other = save(tmp_path / "other.png", hopper)
    r = register_character(reg, ws, "mara", person_photos + [other], kind="person")
    assert len(r.accepted) == 3
    assert len(r.rejected) == 1 and "other.png: looks like a different person: distance" in r.rejected[0]
    assert "use --force" in r.rejected[0]
    assert len(reg.photos("mara")) == 3


def test_gates_name_file_gate_and_value(reg, ws, tmp_path, person_photos):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    tiny = save(tmp_path / "tiny.png", np.zeros((40, 50, 3), np.uint8))
    blank = save(tmp_path / "blank.png", np.full((200, 200, 3), 128, np.uint8))
    from PIL import Image

    dup = save(tmp_path / "dup.png", np.asarray(Image.open(person_photos[0])))
    register_character(reg, ws, "mara", [person_photos[0]], kind="person")
    with pytest.raises(RegistryError) as e:
        register_character(reg, ws, "mara", [empty, text, tiny, blank, dup], kind="person")
    msg = str(e.value)
    assert f"{empty}: unreadable photo: the file is empty (0 bytes)" in msg
    assert f"{text}: not an image" in msg
    assert f"{tiny}: too small: 50x40 (minimum 64 px on the short side)" in msg
    assert f"{blank}: no face found (dlib-face)" in msg
    assert f"{dup}: duplicate of p1.png (character 'mara'): perceptual-hash distance 0 bits" in msg
    assert len(reg.photos("mara")) == 1  # nothing of the refused photos stored


def test_several_faces_need_face_index(reg, ws, tmp_path, astronaut, hopper):
    from PIL import Image

    h = np.array(Image.fromarray(hopper).resize((240, 281)))  # face about as large as the astronaut's
    both = np.zeros((300, 680, 3), np.uint8) + 90
    both[:300, :400] = astronaut
    both[:281, 420:660] = h
    p = save(tmp_path / "both.png", both)
    with pytest.raises(RegistryError, match=r"both.png: 2 faces and no dominant one; pass --face N"):
        register_character(reg, ws, "mara", [p], kind="person")
    r = register_character(reg, ws, "mara", [p], kind="person", face=0)
    box = json.loads(next(iter(reg.db["embeddings"].rows))["box"])
    assert box[0] < 400  # the left face
    assert r.accepted


def test_bad_handle_is_refused(reg, ws, person_photos):
    with pytest.raises(UnsafePathError, match=r"handle '../evil' is not allowed"):
        register_character(reg, ws, "../evil", person_photos, kind="person")
    assert reg.characters() == []


def test_non_face_character_uses_appearance_encoder(reg, ws, tmp_path, cat):
    p = save(tmp_path / "cat.png", cat)
    register_character(reg, ws, "chelsea", [p], kind="pet")
    rows = list(reg.db["embeddings"].rows)
    assert [r["encoder"] for r in rows] == ["appearance"]


# ---------------------------------------------------------------- real faces shipped in the insightface wheel

INSIGHTFACE_IMAGES = Path(__import__("insightface").__file__).parent / "data" / "images"


@pytest.fixture(scope="module")
def hanks() -> np.ndarray:
    return np.asarray(Image.open(INSIGHTFACE_IMAGES / "Tom_Hanks_54745.png").convert("RGB")).copy()


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    return np.asarray(Image.open(INSIGHTFACE_IMAGES / "t1.jpg").convert("RGB")).copy()


def _jpeg(rgb, q=40):
    b = io.BytesIO()
    Image.fromarray(rgb).save(b, "JPEG", quality=q)
    return np.asarray(Image.open(b).convert("RGB"))


def _rot(rgb, deg):
    return np.asarray(Image.fromarray(rgb).rotate(deg, resample=Image.BICUBIC))


def test_same_face_under_augmentations_stays_inside_the_stored_bound(reg, ws, tmp_path, hanks):
    photos = [save(tmp_path / "hanks.png", hanks), save(tmp_path / "hanks_flip.png", hanks[:, ::-1].copy())]
    register_character(reg, ws, "tom", photos, kind="person")
    (ident,) = reg.identity("tom")
    assert ident["encoder"] == "dlib-face" and ident["n"] == 2
    enc = get_encoder("dlib-face", Settings())
    variants = {"flip": hanks[:, ::-1].copy(), "brighter": np.clip(hanks * 1.3, 0, 255).astype(np.uint8),
                "darker": (hanks * 0.6).astype(np.uint8), "jpeg q40": _jpeg(hanks), "rot +8": _rot(hanks, 8),
                "rot -8": _rot(hanks, -8)}
    for what, img in variants.items():
        (d,) = enc.embed(img)
        assert float(d.vector @ ident["centroid"]) >= ident["bound"], what


def test_a_different_person_is_refused_as_outlier(reg, ws, tmp_path, hanks, group):
    face = group[365 - 60:469 + 40, 734 - 50:837 + 50]  # one face of the group photo, a different person
    photos = [save(tmp_path / "hanks.png", hanks), save(tmp_path / "hanks_flip.png", hanks[:, ::-1].copy()),
              save(tmp_path / "hanks_rot.png", _rot(hanks, 8)), save(tmp_path / "stranger.png", face)]
    r = register_character(reg, ws, "tom", photos, kind="person")
    assert len(r.accepted) == 3
    (line,) = r.rejected
    assert line.startswith(f"{photos[3]}: looks like a different person: distance 0.1")
    assert ", the others are within 0.0" in line and "(bound 0.09, dlib-face); use --force to keep it" in line
    assert {p["source"] for p in reg.photos("tom")} == {"hanks.png", "hanks_flip.png", "hanks_rot.png"}
    forced = register_character(reg, ws, "tom", [photos[3]], kind="person", force=True)
    assert forced.accepted == [str(photos[3])]


def test_group_photo_asks_for_face_and_candidates_match(reg, ws, tmp_path, group):
    p = save(tmp_path / "t1.png", group)
    cands = face_candidates(p)
    assert [c["index"] for c in cands] == list(range(6))
    assert [c["box"][0] for c in cands] == sorted(c["box"][0] for c in cands)  # left to right
    with pytest.raises(RegistryError) as e:
        register_character(reg, ws, "crowd", [p], kind="person")
    boxes = "; ".join(f"{c['index']}: {tuple(c['box'])}" for c in cands)
    assert f"{p}: 6 faces and no dominant one; pass --face N (left to right: {boxes})" in str(e.value)
    r = register_character(reg, ws, "crowd", [p], kind="person", face=3)
    assert r.accepted and json.loads(next(iter(reg.db["embeddings"].rows))["box"]) == cands[3]["box"]
    assert reg.photos("crowd")[0]["width"] == group.shape[1]


def test_face_index_out_of_range(reg, ws, tmp_path, hanks):
    p = save(tmp_path / "hanks.png", hanks)
    with pytest.raises(RegistryError, match=r"hanks.png: --face 2 asked, but 1 face\(s\) were found \(0-0, left to right\)"):
        register_character(reg, ws, "tom", [p], kind="person", face=2)


def test_duplicate_of_another_characters_photo(reg, ws, tmp_path, hanks):
    register_character(reg, ws, "tom", [save(tmp_path / "a" / "hanks.png", hanks)], kind="person")
    again = save(tmp_path / "again.jpg", hanks, quality=90)  # re-encoded: other bytes, same picture
    with pytest.raises(RegistryError) as e:
        register_character(reg, ws, "mara", [again], kind="person")
    assert f"{again}: duplicate of hanks.png (character 'tom'): perceptual-hash distance 0 bits" in str(e.value)
    assert not reg.has_character("mara")


def test_small_and_blurry_faces(reg, ws, tmp_path, astronaut):
    import cv2

    small = save(tmp_path / "small.png", np.asarray(Image.fromarray(astronaut).resize((200, 150), Image.BICUBIC)))
    blurry = save(tmp_path / "blurry.png", cv2.GaussianBlur(astronaut, (0, 0), 4))
    with pytest.raises(RegistryError) as e:
        register_character(reg, ws, "mara", [small, blurry], kind="person")
    msg = str(e.value)
    assert f"{small}: face too small: 43 px wide (minimum 60)" in msg
    assert f"{blurry}: too blurry: sharpness 9.7 (minimum 15.0)" in msg
    assert reg.characters() == [] and not (ws.characters / "mara").exists()


def _png_header_only(path, w, h):
    """A PNG whose header claims w×h pixels (no pixel data needed to trip the size gates)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def test_unreadable_truncated_and_bomb(tmp_path, astronaut):
    b = io.BytesIO()
    Image.fromarray(astronaut).save(b, "JPEG")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(b.getvalue()[: len(b.getvalue()) // 2])
    from storyengine.errors import PhotoRejected

    with pytest.raises(PhotoRejected, match=r"trunc.jpg: unreadable photo: image file is truncated"):
        load_rgb(trunc)
    big = _png_header_only(tmp_path / "big.png", 9000, 9000)
    with pytest.raises(PhotoRejected, match=r"big.png: photo too large: 9000x9000 = 81000000 pixels \(limit 80000000\)"):
        load_rgb(big)
    bomb = _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(PhotoRejected, match=r"bomb.png: photo too large \(decompression bomb\): Image size \(900000000 pixels\)"):
        load_rgb(bomb)
    with pytest.raises(PhotoRejected, match=r"missing.png: photo not found"):
        load_rgb(tmp_path / "missing.png")


def test_exif_orientation_cmyk_16bit_alpha_grey(reg, ws, tmp_path, astronaut):
    # EXIF orientation 6 (rotate 90° CW to display): stored sideways, registered upright
    sideways = Image.fromarray(np.rot90(astronaut, 1).copy())  # what a camera stores for a portrait shot
    exif = sideways.getexif()
    exif[0x0112] = 6
    p = tmp_path / "exif.jpg"
    sideways.save(p, quality=95, exif=exif)
    rgb = load_rgb(p)
    assert rgb.shape == astronaut.shape
    assert np.abs(rgb.astype(int) - astronaut).mean() < 6
    r = register_character(reg, ws, "mara", [p], kind="person")
    assert r.accepted and reg.photos("mara")[0]["width"] == astronaut.shape[1]

    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(astronaut).convert("CMYK").save(cmyk, quality=95)
    assert np.abs(load_rgb(cmyk).astype(int) - astronaut).mean() < 8

    g16 = (np.linspace(0, 65535, 128 * 128).reshape(128, 128)).astype(np.uint16)
    p16 = tmp_path / "g16.png"
    Image.fromarray(g16).save(p16)
    out = load_rgb(p16)
    assert out.dtype == np.uint8 and out.shape == (128, 128, 3) and out[0, 0, 0] == 0 and out[-1, -1, 0] == 255

    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[:40, :, :] = (200, 10, 10, 255)  # top opaque red, bottom fully transparent
    pa = save(tmp_path / "alpha.png", rgba)
    out = load_rgb(pa)
    assert tuple(out[0, 0]) == (200, 10, 10) and tuple(out[-1, -1]) == (255, 255, 255)

    pg = save(tmp_path / "grey.png", (astronaut.mean(axis=2)).astype(np.uint8))
    out = load_rgb(pg)
    assert out.shape == astronaut.shape and (out[..., 0] == out[..., 2]).all()


def test_identity_stats_stored_in_the_same_transaction(reg, ws, person_photos):
    from storyengine.consistency import derive_bound

    register_character(reg, ws, "mara", person_photos, kind="person")
    (s,) = reg.identity("mara")
    vecs = np.stack([v.vector for v in reg.vectors("mara", "dlib-face", "resnet_v1")])
    sims = vecs @ vecs.T
    iu = np.triu_indices(3, 1)
    assert s["n"] == 3 and s["dim"] == 128 and s["encoder_version"] == "resnet_v1"
    assert s["max_distance"] == pytest.approx(float((1 - sims[iu]).max()), abs=1e-6)
    assert s["mean_distance"] == pytest.approx(float((1 - sims[iu]).mean()), abs=1e-6)
    bound, source = derive_bound(get_encoder("dlib-face", Settings()), vecs)
    assert s["bound"] == pytest.approx(bound) and s["bound_source"] == source
    np.testing.assert_allclose(s["centroid"] @ vecs.mean(axis=0) / np.linalg.norm(vecs.mean(axis=0)), 1.0, atol=1e-5)
    assert 0.0 < s["max_distance"] < 1 - get_encoder("dlib-face", Settings()).same_bound
