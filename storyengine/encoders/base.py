"""The Encoder protocol: image in, detections (box + identity vector) out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One found subject: ``box`` is (x0, y0, x1, y1) in pixels, ``vector`` is L2-normalised float32."""

    box: tuple[int, int, int, int]
    vector: np.ndarray
    score: float

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return max(0, x1 - x0) * max(0, y1 - y0)


def l2n(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (both are normalised here, so callers need not)."""
    return float(np.dot(l2n(a), l2n(b)))


class Encoder:
    """Base class for identity encoders.

    Subclasses set the class attributes and implement :meth:`embed`. Heavy imports and model
    loads happen in ``__init__`` (or lazily on first use), never at module import.

    ``same_bound`` is the cosine similarity above which two vectors of this encoder are
    usually the same identity, ``different_mean`` the typical similarity of two different
    identities; the checker derives per-character acceptance bounds from them and the spread
    of the character's own photos. Vectors of different encoders are never compared.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    licence: ClassVar[str]
    dim: ClassVar[int]
    modality: ClassVar[Literal["face", "appearance"]]
    same_bound: ClassVar[float]
    different_mean: ClassVar[float]

    def embed(self, image: np.ndarray) -> list[Detection]:
        """Detect subjects in an RGB uint8 HxWx3 image and return one Detection per subject."""
        raise NotImplementedError

    def key(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def settings_kwargs(cls, settings: Any) -> dict[str, Any]:
        """Constructor arguments taken from ``Settings`` (weights, model pack); none by default."""
        return {}


def file_digest(path: str | Path, chars: int = 12) -> str:
    """First ``chars`` hex digits of a file's sha256 (streamed): the identity of a weights file."""
    from ..hashing import file_sha256

    return file_sha256(path)[:chars]
