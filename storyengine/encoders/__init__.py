"""Identity encoders: one file each; found through ``storyengine.plugins``."""

from .base import Detection, Encoder, cosine

__all__ = ["Detection", "Encoder", "cosine"]
