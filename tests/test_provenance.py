"""C2PA signing and verification on tiny real MP4s (no network, no weights)."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("c2pa")
from PIL import Image  # noqa: E402

from storyengine import provenance as pv  # noqa: E402
from storyengine.errors import MediaError, StoryEngineError  # noqa: E402
from storyengine.media import VideoWriter  # noqa: E402


def make_clip(path: Path, shade: int = 0) -> Path:
    with VideoWriter(path, 64, 48, 12, preset="ultrafast") as w:
        for i in range(12):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[:, : 4 + i * 5] = (shade + 40 + i * 15) % 256
            w.write(frame)
    return path


def make_still(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def top_level_box(data: bytes, name: bytes) -> tuple[int, int]:
    """(offset, size) of the first top-level ISO-BMFF box called ``name``."""
    i = 0
    while i + 8 <= len(data):
        size, typ = struct.unpack(">I4s", data[i : i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
        if typ == name:
            return i, size
        i += size or len(data) - i
    raise AssertionError(f"no {name!r} box")


@pytest.fixture(scope="module")
def cred(tmp_path_factory) -> pv.Credential:
    return pv.ensure_dev_credential(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def signed(tmp_path_factory, cred) -> dict:
    d = tmp_path_factory.mktemp("signed")
    still = make_still(d / "ada.png")
    clips = []
    for n, (backend, dst) in enumerate([("wan", pv.TRAINED_ALGORITHMIC_MEDIA), ("motion", pv.ALGORITHMIC_MEDIA)]):
        clip = make_clip(d / f"shot{n}.mp4", shade=n * 60)
        pv.sign_clip(clip, credential=cred, backend_id=backend, model="tiny-model" if n == 0 else None,
                     seed=41 + n, source_still=still, digital_source_type=dst, title=f"shot {n}",
                     extra={"shot": f"s01e01-sh{n:02d}"})
        clips.append(clip)
    episode = make_clip(d / "episode.mp4", shade=200)
    pv.sign_episode(episode, credential=cred, clips=clips, disclosure="Contains AI-generated footage", title="Ep 1")
    return {"dir": d, "still": still, "clips": clips, "episode": episode}


def test_dev_credential_created_once_and_reused(tmp_path):
    first = pv.ensure_dev_credential(tmp_path)
    again = pv.ensure_dev_credential(tmp_path)
    assert first.development and first.algorithm == "es256" and first.tsa_url is None
    assert again.fingerprint == first.fingerprint
    assert stat.S_IMODE(os.stat(first.private_key).st_mode) == 0o600
    assert (tmp_path / "dev-root.pem").is_file()


def test_signed_clip_verifies_valid_but_untrusted(signed):
    res = pv.verify(signed["clips"][0])
    assert res.state == "valid", res.failures
    assert res.development is True and res.trusted is False
    assert res.codes == ["signingCredential.untrusted"]
    created = [a for a in res.actions if a["action"] == "c2pa.created"]
    assert created and created[0]["digitalSourceType"] == pv.TRAINED_ALGORITHMIC_MEDIA
    assert created[0]["parameters"]["seed"] == 41 and created[0]["parameters"]["backend"] == "wan"
    assert created[0]["softwareAgent"]["name"] == "storyengine"
    assert res.ingredients == ["ada.png"]
    assert res.render["shot"] == "s01e01-sh00" and res.render["model"] == "tiny-model"
    assert any(DEV in line for line in res.lines() for DEV in [pv.DEV_NOTICE])

    motion = pv.verify(signed["clips"][1])
    assert motion.state == "valid" and motion.digital_source_types == [pv.ALGORITHMIC_MEDIA]


def test_trust_anchor_makes_dev_signature_trusted(signed, cred):
    res = pv.verify(signed["clips"][0], trust_anchors=cred.cert_chain.parent / "dev-root.pem")
    assert res.state == "valid" and res.trusted is True and res.development is True


def test_episode_lists_clips_and_disclosure(signed):
    res = pv.verify(signed["episode"])
    assert res.state == "valid", res.failures
    assert res.ingredients == ["shot0.mp4", "shot1.mp4"]
    assert res.digital_source_types == [pv.COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA]
    assert [a["action"] for a in res.actions].count("c2pa.placed") == 2
    assert res.episode["disclosure"] == {"mode": "label", "text": "Contains AI-generated footage"}
    assert res.codes == ["signingCredential.untrusted"]
    recorded = [s for s in res.informational if s.kind == "ingredient"]
    assert [s.code for s in recorded] == ["signingCredential.untrusted"] * 2  # each clip's own signer


def test_episode_refuses_tampered_clip(signed, cred, tmp_path):
    data = bytearray(signed["clips"][0].read_bytes())
    off, size = top_level_box(bytes(data), b"mdat")
    data[off + 8 + size // 2] ^= 0xFF
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    episode = make_clip(tmp_path / "ep.mp4")
    before = episode.read_bytes()
    with pytest.raises(MediaError, match="bad.mp4"):
        pv.sign_episode(episode, credential=cred, clips=[bad], disclosure=None, title="x")
    assert episode.read_bytes() == before


def test_tampered_payload_is_invalid(signed, tmp_path):
    data = bytearray(signed["clips"][0].read_bytes())
    off, size = top_level_box(bytes(data), b"mdat")
    data[off + 8 + size // 2] ^= 0xFF
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    res = pv.verify(bad)
    assert res.state == "invalid"
    assert "assertion.bmffHash.mismatch" in res.codes


def test_unsigned_file_is_missing(tmp_path):
    res = pv.verify(make_clip(tmp_path / "plain.mp4"))
    assert res.state == "missing" and not res.actions


def _assert_untouched(clip: Path, before: bytes) -> None:
    assert clip.read_bytes() == before
    assert sorted(p.name for p in clip.parent.iterdir()) == sorted([clip.name, "ada.png"])


@pytest.mark.parametrize("breakage", ["tsa", "key"])
def test_failed_sign_leaves_original_untouched(tmp_path, cred, breakage):
    out = tmp_path / "out"
    out.mkdir()
    clip, still = make_clip(out / "c.mp4"), make_still(out / "ada.png")
    before = clip.read_bytes()
    if breakage == "tsa":
        bad = pv.Credential(cred.cert_chain, cred.private_key, "es256", "http://127.0.0.1:9/", True)
    else:
        broken = tmp_path / "broken-key.pem"
        broken.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        bad = pv.Credential(cred.cert_chain, broken, "es256", None, True)
    with pytest.raises(MediaError, match="c.mp4"):
        pv.sign_clip(clip, credential=bad, backend_id="wan", model=None, seed=1, source_still=still,
                     digital_source_type=pv.TRAINED_ALGORITHMIC_MEDIA, title="c")
    _assert_untouched(clip, before)


def test_load_credential_rejects_mismatched_key(tmp_path, cred):
    other = pv.ensure_dev_credential(tmp_path)
    with pytest.raises(StoryEngineError, match="does not belong"):
        pv.load_credential(cred.cert_chain, other.private_key)
    with pytest.raises(StoryEngineError, match="ps256"):
        pv.load_credential(cred.cert_chain, cred.private_key, "ps256")
