"""Video I/O through ffmpeg: stream frames in and out, probe files. No frame list is ever held."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import MediaError


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """ffmpeg from imageio-ffmpeg's bundled binary (falls back to one on PATH)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # pragma: no cover - only without imageio-ffmpeg
        exe = shutil.which("ffmpeg")
        if not exe:
            raise MediaError("ffmpeg not found: install imageio-ffmpeg (pip) or ffmpeg (apt)")
        return exe


def ffprobe_exe() -> str:
    exe = shutil.which("ffprobe")
    if not exe:
        raise MediaError("ffprobe not found on PATH: install it with `apt-get install ffmpeg`")
    return exe


def _tail(data: bytes, n: int = 1200) -> str:
    return data.decode("utf-8", "replace")[-n:].strip()


class VideoWriter:
    """Stream RGB uint8 frames into an H.264 (yuv420p) file through an ffmpeg pipe.

    Use as a context manager; ``audio`` (a WAV path) is muxed as AAC when given.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        *,
        crf: int = 18,
        preset: str = "medium",
        audio: str | Path | None = None,
        audio_bitrate: str = "160k",
        faststart: bool = True,
    ) -> None:
        self.path = Path(path)
        self.width, self.height, self.fps = int(width), int(height), fps
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}", "-r", f"{fps}",
            "-i", "-",
        ]
        if audio is not None:
            cmd += ["-i", str(audio)]
        cmd += ["-map", "0:v:0"]
        if audio is not None:
            cmd += ["-map", "1:a:0", "-c:a", "aac", "-b:a", audio_bitrate, "-shortest"]
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
        if faststart:
            cmd += ["-movflags", "+faststart"]
        cmd += ["-f", "mp4", str(self.path)]
        self._cmd = cmd
        self._proc: subprocess.Popen[bytes] | None = None
        self.frames_written = 0

    def __enter__(self) -> "VideoWriter":
        self._proc = subprocess.Popen(self._cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        return self

    def write(self, frame: np.ndarray) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise MediaError(
                f"frame {self.frames_written} of {self.path.name} is {frame.shape} {frame.dtype}, "
                f"expected ({self.height}, {self.width}, 3) uint8"
            )
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            err = self._proc.stderr.read() if self._proc.stderr else b""
            raise MediaError(f"ffmpeg stopped while writing {self.path}: {_tail(err)}") from None
        self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._proc is not None
        if self._proc.stdin:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        err = self._proc.stderr.read() if self._proc.stderr else b""
        rc = self._proc.wait()
        if exc_type is None and rc != 0:
            raise MediaError(f"ffmpeg failed writing {self.path} (exit {rc}): {_tail(err)}")


def iter_frames(path: str | Path, *, size: tuple[int, int] | None = None, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the RGB uint8 frames of a video file one at a time.

    ``size`` (width, height) scales frames on decode; default is the file's own size.
    ``max_frames`` stops decoding early. Closing the generator early stops ffmpeg cleanly.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video not found: {path}")
    info = probe(path)
    v = video_stream(info, path)
    w, h = size or (int(v["width"]), int(v["height"]))
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path)]
    if size:
        cmd += ["-vf", f"scale={w}:{h}:flags=bicubic"]
    if max_frames is not None:
        cmd += ["-frames:v", str(int(max_frames))]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    nbytes = w * h * 3
    finished = False
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                finished = True
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    finally:
        if not finished:
            proc.kill()  # the consumer stopped early: not an error
        if proc.stdout:
            proc.stdout.close()
        err = proc.stderr.read() if proc.stderr else b""
        if proc.stderr:
            proc.stderr.close()
        rc = proc.wait()
        if finished and rc != 0:
            raise MediaError(f"ffmpeg failed decoding {path} (exit {rc}): {_tail(err)}")


def probe(path: str | Path) -> dict:
    """ffprobe's JSON (format + streams) for a media file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"media file not found: {path}")
    cmd = [ffprobe_exe(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0:
        raise MediaError(f"ffprobe cannot read {path}: {_tail(res.stderr)}")
    return json.loads(res.stdout)


def video_stream(info: dict, path: str | Path = "") -> dict:
    for s in info.get("streams", []):
        if s.get("codec_type") == "video":
            return s
    raise MediaError(f"no video stream in {path}")


def fps_of(stream: dict) -> float:
    num, _, den = str(stream.get("avg_frame_rate") or stream.get("r_frame_rate") or "0/1").partition("/")
    return float(num) / float(den or 1) if float(den or 1) else 0.0


def count_frames(path: str | Path) -> int:
    """Exact number of decoded video frames (ffprobe -count_frames)."""
    cmd = [ffprobe_exe(), "-v", "error", "-count_frames", "-select_streams", "v:0",
           "-show_entries", "stream=nb_read_frames", "-of", "json", str(path)]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0:
        raise MediaError(f"ffprobe cannot count frames of {path}: {_tail(res.stderr)}")
    return int(json.loads(res.stdout)["streams"][0]["nb_read_frames"])
