"""Video back-ends: one file each; found through ``storyengine.plugins``."""

from .base import Clip, VideoBackend

__all__ = ["Clip", "VideoBackend"]
