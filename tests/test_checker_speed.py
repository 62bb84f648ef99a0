"""Full-mode checking on both cores and without wasted work: the descriptor worker process, the
empty-frame skip, and in-process decoding (same vectors, same detections, same frames as before)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import evalclips as E
from storyengine import media, tracking
from storyengine.encoders import descriptor_worker as dw
from storyengine.errors import MediaError
from storyengine.settings import Settings


# ------------------------------------------------------------------ decoding in-process
def _pipe_frames(path: Path, size=None, max_frames=None) -> list[np.ndarray]:
    """What iter_frames returned before: imageio-ffmpeg's binary through a pipe (the reference here only)."""
    info = media.video_stream(media.probe(path))
    w, h = size or (int(info["width"]), int(info["height"]))
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path)]
    if size:
        cmd += ["-vf", f"scale={w}:{h}:flags=bicubic"]
    if max_frames is not None:
        cmd += ["-frames:v", str(max_frames)]
    raw = subprocess.run(cmd + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3))


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decode") / "clip.mp4"
    clip = E.make_clip("swap", 12, other="hopper", span=(4, 6))
    E.write_clip(clip, path)
    return path


@pytest.mark.parametrize("size,max_frames", [(None, None), ((160, 120), None), ((202, 114), 5), (None, 3)])
def test_iter_frames_gives_the_pipes_frames(small_video, size, max_frames):
    got = list(media.iter_frames(small_video, size=size, max_frames=max_frames))
    want = _pipe_frames(small_video, size, max_frames)
    assert len(got) == len(want) == (max_frames or media.count_frames(small_video))
    assert all(g.dtype == np.uint8 and g.flags.c_contiguous for g in got)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))  # the same pixels, scaled or not


def test_iter_frames_closes_early_and_names_bad_files(small_video, tmp_path):
    it = media.iter_frames(small_video)
    first = next(it)
    it.close()  # the consumer stops: no error, nothing left open
    assert first.shape[2] == 3
    assert list(media.iter_frames(small_video, max_frames=0)) == []
    with pytest.raises(MediaError, match="video not found: .*nope.mp4"):
        list(media.iter_frames(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with pytest.raises(MediaError, match="bad.mp4"):
        list(media.iter_frames(bad))
