"""dlib-face: the embedded, offline default face encoder.

dlib's HOG frontal-face detector, its 5-point shape predictor and its 128-d ResNet face
descriptor, with the weights shipped by the ``face-recognition-models`` package (no download).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import EncoderError
from .base import Detection, Encoder, l2n

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what compute_face_descriptor(img, shape) aligns to
_log = logging.getLogger("storyengine")


def models_dir() -> Path:
    """Folder of face_recognition_models' data, found without importing it (its __init__ imports pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("the dlib-face encoder needs `pip install face-recognition-models dlib-bin`")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibFaceEncoder(Encoder):
    name: ClassVar[str] = "dlib-face"
    version: ClassVar[str] = "resnet_v1"
    licence: ClassVar[str] = "dlib models: CC0 / Boost Software License (face_recognition_models)"
    dim: ClassVar[int] = 128
    modality: ClassVar[str] = "face"
    # dlib's documented same-person rule is euclidean distance < 0.6 between raw descriptors,
    # whose norms are ~1.4 here; on L2-normalised vectors that is cosine ~= 0.91.
    # Different people measured here: 0.80-0.89 (astronaut vs Grace Hopper: 0.88).
    same_bound: ClassVar[float] = 0.91
    different_mean: ClassVar[float] = 0.82
    descriptor_worker: ClassVar[bool] = True  # embed_chips(..., worker=True) may run in a second process

    def __init__(self, upsample: int = 0, min_face: int = 40) -> None:
        try:
            import dlib
        except ImportError as e:  # pragma: no cover
            raise EncoderError(f"the dlib-face encoder needs dlib (`pip install dlib-bin`): {e}") from None
        root = models_dir()
        sp, rec = root / "shape_predictor_5_face_landmarks.dat", root / "dlib_face_recognition_resnet_model_v1.dat"
        for p in (sp, rec):
            if not p.is_file():
                raise EncoderError(f"dlib model file missing: {p} (reinstall face-recognition-models)")
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(sp))
        self._rec = dlib.face_recognition_model_v1(str(rec))
        self._dlib = dlib
        self.upsample = upsample
        self.min_face = min_face

    def detect(self, image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        img = np.ascontiguousarray(image)
        up = self.upsample
        rects, scores, _ = self._detector.run(img, up, 0.0)
        if not rects and up == 0 and min(img.shape[:2]) <= 720:
            rects, scores, _ = self._detector.run(img, 1, 0.0)
        out = []
        for r, s in zip(rects, scores):
            box = (max(0, r.left()), max(0, r.top()), min(img.shape[1], r.right()), min(img.shape[0], r.bottom()))
            if box[2] - box[0] >= self.min_face:
                out.append((box, float(s)))
        return out

    def align(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The 150x150 face chip the descriptor sees: 5 landmarks in ``box``, rotated upright and scaled (dlib's alignment)."""
        img = np.ascontiguousarray(image)
        shape = self._shape(img, self._dlib.rectangle(*[int(v) for v in box]))
        return self._dlib.get_face_chip(img, shape, CHIP_SIZE, CHIP_PADDING)

    def embed_chips(self, chips: list[np.ndarray], *, worker: bool = False) -> np.ndarray:
        """Descriptors of aligned chips (:meth:`align`) in one batched forward pass: (n, 128), L2-normalised.

        ``worker=True`` computes them in the descriptor worker process (:mod:`.descriptor_worker`: the
        same model, the same numbers) so that the calling thread releases the GIL meanwhile; if the
        worker is off, cannot start or dies, they are computed here instead.
        """
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        if worker:
            from . import descriptor_worker as dw

            if dw.available():
                try:
                    return np.stack([l2n(v) for v in dw.descriptors(chips)])
                except dw.WorkerDied as e:
                    _log.warning("%s; computing these %d descriptors in this process (a new worker starts next time)",
                                 e, len(chips))
        vs = self._rec.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.stack([l2n(np.array(v, dtype=np.float32)) for v in vs])

    def embed_box(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        # identical to compute_face_descriptor(img, shape): dlib aligns with the same chip details internally
        return self.embed_chips([self.align(image, box)])[0]

    def embed(self, image: np.ndarray) -> list[Detection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise EncoderError(f"dlib-face expects an RGB uint8 image, got {image.shape} {image.dtype}")
        found = self.detect(image)
        vecs = self.embed_chips([self.align(image, b) for b, _ in found])
        return [Detection(box=b, vector=v, score=s) for (b, s), v in zip(found, vecs)]
