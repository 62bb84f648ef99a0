"""ArcFaceEncoder against tiny stand-in ONNX files routed by insightface's real model_zoo."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("insightface")
pytest.importorskip("onnx")

from storyengine.encoders.insightface_face import ArcFaceEncoder  # noqa: E402
from storyengine.errors import EncoderError  # noqa: E402

from tiny_onnx import make_arcface, make_pack  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    make_pack(root)
    return root


@pytest.fixture(scope="module")
def enc(root):
    return ArcFaceEncoder(root=root, det_size=(320, 320))


def frame_with_face(x: int = 256, y: int = 128, seed: int = 0) -> np.ndarray:
    """640×360 dark frame with a bright 64×64 'face' (textured) on the detector's grid.

    The detector input is 320×320 (scale 1/2), so a 64-pixel patch on a 64-pixel grid is one
    fully bright stride-32 cell of the stand-in SCRFD.
    """
    img = np.zeros((360, 640, 3), np.uint8)
    tex = np.random.default_rng(seed).integers(215, 256, (64, 64, 3), dtype=np.uint8)
    img[y:y + 64, x:x + 64] = tex
    return img


def test_loads_through_insightface_model_zoo(enc, root):
    assert type(enc.detector).__name__ == "SCRFD" and enc.detector.use_kps and enc.detector.fmc == 3
    assert type(enc.recogniser).__name__ == "ArcFaceONNX" and tuple(enc.recogniser.input_size) == (112, 112)
    from storyengine.encoders.base import file_digest

    assert enc.key() == f"arcface@1+buffalo_l/sha256:{file_digest(root / 'models' / 'buffalo_l' / 'w600k_r50.onnx')}"
    assert enc.dim == 512 and enc.modality == "face"
    assert "non-commercial" in enc.licence


def test_embed_finds_the_patch_and_returns_unit_vectors(enc):
    dets = enc.embed(frame_with_face())
    assert len(dets) == 1
    d = dets[0]
    x0, y0, x1, y1 = d.box
    assert x0 <= 288 <= x1 and y0 <= 160 <= y1  # the patch centre
    assert d.vector.shape == (512,) and d.vector.dtype == np.float32
    assert abs(float(np.linalg.norm(d.vector)) - 1.0) < 1e-5
    assert d.score > 0.9


def test_embed_is_deterministic_and_content_sensitive(enc):
    a = enc.embed(frame_with_face(seed=0))[0].vector
    b = enc.embed(frame_with_face(seed=0))[0].vector
    c = enc.embed(frame_with_face(seed=1))[0].vector
    np.testing.assert_array_equal(a, b)
    assert float(a @ c) < 0.9999


def test_two_faces_and_no_face(enc):
    img = frame_with_face(128, 128)
    img[128:192, 448:512] = 255
    assert len(enc.embed(img)) == 2
    assert enc.embed(np.zeros((360, 640, 3), np.uint8)) == []


def test_embed_aligned_matches_embed(enc):
    img = frame_with_face()
    boxes, kps = enc.detect(img)
    crop = enc.align(img, kps[0])
    assert crop.shape == (112, 112, 3)
    v = enc.embed_aligned(crop)
    np.testing.assert_allclose(v, enc.embed(img)[0].vector, atol=1e-6)
    batch = enc.embed_aligned(np.stack([crop, crop[:, ::-1]]))
    assert batch.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    with pytest.raises(EncoderError, match="112x112x3"):
        enc.embed_aligned(np.zeros((100, 100, 3), np.uint8))


def test_rejects_non_rgb(enc):
    with pytest.raises(EncoderError, match="RGB uint8"):
        enc.embed(np.zeros((10, 10), np.uint8))


def test_missing_pack_names_folder_files_and_licence(tmp_path):
    with pytest.raises(EncoderError) as e:
        ArcFaceEncoder(root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "models" / "buffalo_l") in msg
    assert "det_10g.onnx" in msg and "w600k_r50.onnx" in msg
    assert "non-commercial" in msg


def test_half_a_pack_names_the_missing_file(tmp_path):
    folder = tmp_path / "models" / "antelopev2"
    folder.mkdir(parents=True)
    make_arcface(folder / "glintr100.onnx")
    with pytest.raises(EncoderError, match="lacks scrfd_10g_bnkps.onnx"):
        ArcFaceEncoder(pack="antelopev2", root=tmp_path)


def test_root_from_environment(root, monkeypatch):
    monkeypatch.setenv("STORYENGINE_INSIGHTFACE_ROOT", str(root))
    assert ArcFaceEncoder(det_size=(320, 320)).embed(frame_with_face())


def test_unknown_pack(tmp_path):
    with pytest.raises(EncoderError, match="unknown insightface pack 'nope'"):
        ArcFaceEncoder(pack="nope", root=tmp_path)


def test_swapped_files_are_refused(tmp_path):
    folder = tmp_path / "models" / "buffalo_l"
    folder.mkdir(parents=True)
    make_arcface(folder / "det_10g.onnx")
    make_arcface(folder / "w600k_r50.onnx")
    with pytest.raises(EncoderError, match="expected the detection model"):
        ArcFaceEncoder(root=tmp_path)


def test_settings_pick_root_and_pack_and_weights_are_in_the_version(root, tmp_path, monkeypatch):
    from storyengine import plugins
    from storyengine.settings import Settings

    make_pack(tmp_path, pack="antelopev2", det="scrfd_10g_bnkps.onnx", rec="glintr100.onnx")
    a = plugins.get_encoder("arcface", Settings(arcface_root=str(root)))
    b = plugins.get_encoder("arcface", Settings(arcface_root=str(tmp_path), arcface_pack="antelopev2"))
    assert a.version.startswith("1+buffalo_l/sha256:") and b.version.startswith("1+antelopev2/sha256:")
    monkeypatch.setenv("STORYENGINE_ARCFACE_ROOT", str(root))
    assert plugins.get_encoder("arcface", Settings.load()) is a  # env reaches the settings, and through them the encoder
    with pytest.raises(EncoderError) as e:
        plugins.get_encoder("arcface", Settings(arcface_root=str(tmp_path / "empty")))
    msg = str(e.value)
    assert f"put det_10g.onnx and w600k_r50.onnx in {tmp_path / 'empty' / 'models' / 'buffalo_l'}/" in msg
    assert "non-commercial research" in msg
