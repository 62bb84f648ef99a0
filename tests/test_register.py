"""Registration with real faces: gates refuse bad photos with file, gate and value; vectors are stored keyed by encoder."""

import json

import numpy as np
import pytest

from conftest import save
from storyengine.encoders.base import cosine
from storyengine.errors import RegistryError, UnsafePathError
from storyengine.register import register_character
from storyengine.plugins import get_encoder


def test_same_face_under_augmentation_is_closer_than_another_person(astronaut, hopper):
    enc = get_encoder("dlib-face")
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
