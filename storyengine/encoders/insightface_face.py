"""arcface: InsightFace's SCRFD detector + ArcFace recognition model, loaded from local ONNX files.

The model pack lives in insightface's own layout, ``<root>/models/<pack>/*.onnx``. Nothing is
ever downloaded: insightface's ``FaceAnalysis`` and ``get_model(download=True)`` can fetch packs,
so this module calls ``model_zoo.get_model`` on explicit file paths (download off) instead.

InsightFace's pretrained packs are licensed for non-commercial research only; storyengine does
not ship them and the user installs them knowingly.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import EncoderError
from .base import Detection, Encoder, file_digest, l2n

# pack -> (detection model file, recognition model file). Landmark / gender-age models in the
# packs are not needed: SCRFD already gives the 5 keypoints that norm_crop aligns with.
PACKS: dict[str, tuple[str, str]] = {
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
}

LICENCE_NOTE = (
    "InsightFace's pretrained model packs are licensed for non-commercial research purposes only "
    "(https://github.com/deepinsight/insightface#license); obtain a commercial licence from "
    "InsightFace for any other use"
)


def default_providers() -> list[str]:
    """onnxruntime execution providers to use: CUDA first when this onnxruntime has it (the ``gpu``
    extra installs onnxruntime-gpu), then the CPU."""
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - a dependency
        return ["CPUExecutionProvider"]
    available = onnxruntime.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def default_root() -> Path:
    """``$STORYENGINE_INSIGHTFACE_ROOT``, else insightface's own default ``~/.insightface``."""
    return Path(os.environ.get("STORYENGINE_INSIGHTFACE_ROOT") or "~/.insightface").expanduser()


def pack_files(pack: str, root: Path) -> tuple[Path, Path]:
    """Return (detector, recogniser) paths of ``pack`` under ``root``, or raise naming what to put where."""
    if pack not in PACKS:
        raise EncoderError(f"unknown insightface pack {pack!r}; known packs: {', '.join(sorted(PACKS))}")
    folder = root / "models" / pack
    det_name, rec_name = PACKS[pack]
    # The antelopev2 zip unpacks into antelopev2/antelopev2/: accept that nesting too.
    for candidate in (folder, folder / pack):
        det, rec = candidate / det_name, candidate / rec_name
        if det.is_file() and rec.is_file():
            return det, rec
    missing = [n for n in (det_name, rec_name) if not (folder / n).is_file()]
    state = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)}"
    raise EncoderError(
        f"the arcface encoder needs insightface's {pack!r} pack: put {det_name} and {rec_name} "
        f"in {folder}/ (folder {state}). storyengine never downloads them: take them from "
        f"insightface's {pack}.zip release. Set arcface_root in storyengine.toml (or STORYENGINE_ARCFACE_ROOT, "
        f"or STORYENGINE_INSIGHTFACE_ROOT) to use another root than {root}; arcface_pack picks the pack. Note: {LICENCE_NOTE}."
    )


class ArcFaceEncoder(Encoder):
    name: ClassVar[str] = "arcface"
    # The key carries the pack and the recogniser's file: vectors of buffalo_l (w600k_r50) and
    # antelopev2 (glintr100), or of a replaced .onnx, are never compared. __init__ sets the
    # instance's version to "1+<pack>/sha256:<first 12 hex of the recognition model>".
    version: ClassVar[str] = "1+buffalo_l"
    licence: ClassVar[str] = "code: MIT (insightface); model packs: non-commercial research only (InsightFace)"
    dim: ClassVar[int] = 512
    modality: ClassVar[str] = "face"
    # Published operating points for insightface ArcFace embeddings (cosine of L2-normalised
    # 512-d vectors): insightface's SCRFD + ArcFaceONNX verification demo says "< 0.2 NOT the same
    # person, 0.2-0.28 LIKELY, >= 0.28 the same person"; the older deploy/test.py threshold of
    # squared-L2 distance 1.24 is cosine 0.38 (deepinsight/insightface issues #168, #1106).
    # Different identities cluster around 0.0-0.1 (near-orthogonal 512-d vectors).
    same_bound: ClassVar[float] = 0.28
    different_mean: ClassVar[float] = 0.05

    def __init__(
        self,
        pack: str = "buffalo_l",
        root: str | os.PathLike[str] | None = None,
        det_size: tuple[int, int] = (640, 640),
        providers: Sequence[Any] | None = None,
        det_thresh: float = 0.5,
        min_face: int = 20,
    ) -> None:
        """Load the detector and recogniser of ``pack`` from ``<root>/models/<pack>/``.

        Args:
            pack: insightface model pack name (``buffalo_l``, ``buffalo_s`` or ``antelopev2``).
            root: insightface root; default ``$STORYENGINE_INSIGHTFACE_ROOT`` or ``~/.insightface``.
            det_size: detector input (width, height); the image is letterboxed into it.
            providers: onnxruntime execution providers; default CUDA when onnxruntime-gpu is
                installed (``pip install storyengine[gpu]``), else CPU. ``self.provider`` says
                which one the recogniser actually runs on.
            det_thresh: detector score threshold.
            min_face: faces whose box is narrower than this many pixels are dropped.
        """
        root_path = Path(root).expanduser() if root is not None else default_root()
        det_path, rec_path = pack_files(pack, root_path)
        try:
            from insightface.model_zoo import model_zoo
        except ImportError as e:  # pragma: no cover
            raise EncoderError(f"the arcface encoder needs `pip install insightface onnxruntime`: {e}") from None
        self.pack = pack
        self.version = f"1+{pack}/sha256:{file_digest(rec_path)}"  # type: ignore[misc]  # see class comment
        self.det_size = (int(det_size[0]), int(det_size[1]))
        self.min_face = int(min_face)
        provs = list(providers) if providers is not None else default_providers()

        # Explicit .onnx paths: get_model's routing (by output count / input shape) with
        # download=False; no FaceAnalysis, which resolves packs through its downloader.
        self.detector = self._load(model_zoo, det_path, provs, "detection")
        self.recogniser = self._load(model_zoo, rec_path, provs, "recognition")
        session = getattr(self.recogniser, "session", None)
        used = session.get_providers() if session is not None and hasattr(session, "get_providers") else provs
        self.provider = str(used[0]) if used else "CPUExecutionProvider"
        """The onnxruntime execution provider the recogniser runs on (``CUDAExecutionProvider`` on a GPU)."""
        ctx = 0 if self.provider == "CUDAExecutionProvider" else -1
        self.detector.prepare(ctx, input_size=self.det_size, det_thresh=det_thresh)
        if not self.detector.use_kps:
            raise EncoderError(f"detector {det_path} gives no 5-point keypoints; arcface needs them to align faces")
        out = self.recogniser.output_shape[-1]
        if out != self.dim:
            raise EncoderError(f"recognition model {rec_path} outputs {out}-d vectors, expected {self.dim}")

    @classmethod
    def settings_kwargs(cls, settings: Any) -> dict[str, Any]:
        return {"pack": settings.arcface_pack, "root": settings.arcface_root or None}

    @staticmethod
    def _load(model_zoo: Any, path: Path, providers: list[Any], task: str) -> Any:
        try:
            model = model_zoo.get_model(str(path), providers=providers, download=False)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise EncoderError(f"cannot load {task} model {path}: {e}") from e
        if model is None or getattr(model, "taskname", None) != task:
            got = getattr(model, "taskname", "an unrecognised model")
            raise EncoderError(f"{path} is {got}, expected the {task} model of the pack")
        return model

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (boxes N×5 [x0,y0,x1,y1,score], keypoints N×5×2) for an RGB uint8 image."""
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # insightface models take BGR (swapRB inside)
        boxes, kpss = self.detector.detect(bgr, input_size=self.det_size)
        if kpss is None:
            kpss = np.zeros((len(boxes), 5, 2), np.float32)
        return boxes, kpss

    def embed_aligned(self, face: np.ndarray) -> np.ndarray:
        """Embed already aligned RGB uint8 face crops (112×112×3, or N×112×112×3) -> L2-normalised rows."""
        faces = face[None] if face.ndim == 3 else face
        size = tuple(self.recogniser.input_size)
        if faces.ndim != 4 or faces.shape[1:3] != size[::-1] or faces.shape[3] != 3:
            raise EncoderError(f"embed_aligned expects {size[1]}x{size[0]}x3 RGB crops, got {face.shape}")
        bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in faces]
        if isinstance(self.recogniser.input_shape[0], int):  # fixed batch size: one crop per run
            feats = np.concatenate([self.recogniser.get_feat(b) for b in bgr]).astype(np.float32)
        else:
            feats = np.asarray(self.recogniser.get_feat(bgr), dtype=np.float32)
        feats = feats.reshape(len(bgr), -1)
        out = np.stack([l2n(f) for f in feats])
        return out[0] if face.ndim == 3 else out

    def align(self, image: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Warp the face with 5 keypoints ``kps`` to the recogniser's 112×112 ArcFace template."""
        from insightface.utils import face_align

        with warnings.catch_warnings():  # skimage 0.26 deprecates SimilarityTransform.estimate, used inside
            warnings.simplefilter("ignore", FutureWarning)
            size = self.recogniser.input_size[0]
            return face_align.norm_crop(image, landmark=np.asarray(kps, np.float32), image_size=size)

    def embed(self, image: np.ndarray) -> list[Detection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise EncoderError(f"arcface expects an RGB uint8 HxWx3 image, got {image.shape} {image.dtype}")
        # 1. Detect faces and their 5 keypoints
        boxes, kpss = self.detect(image)
        h, w = image.shape[:2]
        keep = []
        for b, k in zip(boxes, kpss):
            x0, y0 = max(0, int(round(b[0]))), max(0, int(round(b[1])))
            x1, y1 = min(w, int(round(b[2]))), min(h, int(round(b[3])))
            if x1 - x0 >= self.min_face and y1 - y0 > 0:
                keep.append(((x0, y0, x1, y1), float(b[4]), k))
        if not keep:
            return []
        # 2. Align each face to the ArcFace template, 3. embed them in one batch
        crops = np.stack([self.align(image, k) for _, _, k in keep])
        vecs = self.embed_aligned(crops)
        return [Detection(box=box, vector=v, score=s) for (box, s, _), v in zip(keep, vecs)]
