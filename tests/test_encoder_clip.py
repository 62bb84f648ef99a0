"""ClipEncoder with a tiny random open_clip model; never downloads."""

from __future__ import annotations

import json

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from storyengine.encoders.clip_appearance import ClipEncoder  # noqa: E402
from storyengine.encoders.windows import candidate_windows  # noqa: E402
from storyengine.errors import EncoderError  # noqa: E402

TINY = "storyengine-tiny-clip"
TINY_CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    """Register a tiny architecture with open_clip, as a user would with add_model_config."""
    d = tmp_path_factory.mktemp("clipcfg")
    (d / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(d)
    return TINY


@pytest.fixture(scope="module")
def tiny(tiny_name):
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_name, pretrained=None)
    return model, preprocess


@pytest.fixture(scope="module")
def enc(tiny):
    return ClipEncoder(model=tiny[0], preprocess=tiny[1])


class Payload:
    """Any non-allowlisted object makes a pickle that torch.load(weights_only=True) refuses."""


def frame(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    img[100:250, 300:450] = (200, 120, 40)
    return img


def test_embed_returns_all_windows_unit_vectors(enc):
    dets = enc.embed(frame())
    assert [d.box for d in dets] == candidate_windows(640, 360)
    assert enc.dim == 24 and enc.modality == "appearance"
    vecs = np.stack([d.vector for d in dets])
    assert vecs.shape == (27, 24) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert len({v.tobytes() for v in vecs}) > 1


def test_deterministic_and_batch_independent(enc, tiny):
    img = frame()
    a = np.stack([d.vector for d in enc.embed(img)])
    small_batches = ClipEncoder(model=tiny[0], preprocess=tiny[1], batch_size=4)
    b = np.stack([d.vector for d in small_batches.embed(img)])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_embed_region_matches_window(enc):
    img = frame()
    d = enc.embed(img)[5]
    np.testing.assert_allclose(enc.embed_region(img, d.box), d.vector, atol=1e-5)
    with pytest.raises(EncoderError, match="outside"):
        enc.embed_region(img, (700, 0, 800, 10))


def test_safetensors_round_trip_through_real_loader(tiny_name, tiny, enc, tmp_path):
    path = tmp_path / "tiny.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in tiny[0].state_dict().items()}, str(path))
    loaded = ClipEncoder(model_name=tiny_name, pretrained=str(path))
    from storyengine.encoders.base import file_digest

    assert loaded.key() == f"clip@1+{tiny_name}/sha256:{file_digest(path)}"  # the weights are part of the key
    assert enc.version.startswith("1+ViT-B-32/custom:")  # in-memory weights: digest of the state dict
    img = frame(3)
    full = (0, 0, 640, 360)
    np.testing.assert_allclose(loaded.embed_region(img, full), enc.embed_region(img, full), atol=1e-5)


def test_weights_only_pt_accepted_pickle_refused(tiny_name, tiny, tmp_path):
    ok = tmp_path / "tiny.pt"
    torch.save(tiny[0].state_dict(), ok)
    assert ClipEncoder(model_name=tiny_name, pretrained=str(ok)).dim == 24

    bad = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny[0].state_dict(), "x": Payload()}, bad)
    with pytest.raises(EncoderError, match="refused"):
        ClipEncoder(model_name=tiny_name, pretrained=str(bad))


def test_offline_uncached_tag_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderError) as e:
        ClipEncoder(model_name="ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    msg = str(e.value)
    assert "HF_HUB_OFFLINE" in msg and "laion2b_s34b_b79k" in msg and ".safetensors" in msg


def test_bad_arguments(tiny_name, tiny, tmp_path):
    with pytest.raises(EncoderError, match="does not exist"):
        ClipEncoder(model_name=tiny_name, pretrained=str(tmp_path / "nope.safetensors"))
    with pytest.raises(EncoderError, match="neither a file nor a pretrained tag"):
        ClipEncoder(model_name="ViT-B-32", pretrained="no-such-tag")
    with pytest.raises(EncoderError, match="unknown open_clip model"):
        ClipEncoder(model_name="ViT-Q-99")
    with pytest.raises(EncoderError, match="both"):
        ClipEncoder(model=tiny[0])


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("RUN_SLOW"), reason="needs real CLIP weights; set RUN_SLOW=1")
def test_real_weights_calibration():
    """Prints the cosines that same_bound / different_mean should be checked against."""
    data = pytest.importorskip("skimage.data")
    enc = ClipEncoder()
    cat = data.chelsea()
    box = lambda im: (0, 0, im.shape[1], im.shape[0])  # noqa: E731
    ref = enc.embed_region(cat, box(cat))
    same = {"flip": cat[:, ::-1].copy(), "dark": (cat * 0.75).astype(np.uint8), "crop": cat[30:270, 45:405].copy()}
    other = {"coffee": data.coffee(), "astronaut": data.astronaut(), "rocket": data.rocket()}
    s = {k: float(enc.embed_region(v, box(v)) @ ref) for k, v in same.items()}
    o = {k: float(enc.embed_region(v, box(v)) @ ref) for k, v in other.items()}
    print("clip same:", s, "different:", o)
    assert min(s.values()) > enc.same_bound > max(o.values())
