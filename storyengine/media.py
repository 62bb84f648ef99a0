"""Video I/O: frames are encoded through the ffmpeg binary that imageio-ffmpeg ships; files are
decoded, probed and counted in-process with PyAV (FFmpeg's libraries in its wheel). No system ffmpeg
or ffprobe is used, and no frame list is ever held.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import MediaError


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary inside the imageio-ffmpeg wheel (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        raise MediaError("imageio-ffmpeg is not installed: run `pip install imageio-ffmpeg` "
                         "(it ships the ffmpeg that storyengine encodes with)") from None
    except RuntimeError as e:  # imageio-ffmpeg has no binary for this platform and found none
        raise MediaError(f"no ffmpeg binary: {e}") from None


def _av():
    try:
        import av
    except ImportError:
        raise MediaError("PyAV is not installed: run `pip install av` (its wheel ships the FFmpeg "
                         "libraries storyengine probes and counts frames with)") from None
    return av


def require_tools() -> None:
    """Fail before any work when a media tool is missing: the encoder binary and PyAV."""
    ffmpeg_exe()
    _av()


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
    """Yield the RGB uint8 frames of a video file one at a time, decoded in-process with PyAV.

    ``size`` (width, height) scales frames on decode with FFmpeg's own ``scale`` filter
    (``flags=bicubic``, then ``format=rgb24``: the pixels the ``ffmpeg -vf scale=W:H:flags=bicubic``
    pipe gave); default is the file's own size. ``max_frames`` stops decoding early. Closing the
    generator early closes the file. Every decoded frame is yielded (the count ``count_frames``
    reports; no frame-rate conversion). Errors are :class:`MediaError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video not found: {path}")
    av = _av()
    if max_frames is not None and int(max_frames) <= 0:
        return
    n = 0
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"no video stream in {path}")
        st = c.streams.video[0]
        st.thread_type = "AUTO"  # frame + slice threads: ~2 ms a 640x480 frame instead of ~2.8 through a pipe
        graph = sink = None
        if size:
            w, h = int(size[0]), int(size[1])
            if w <= 0 or h <= 0:
                raise MediaError(f"cannot scale {path} to {w}x{h}: width and height must be positive")
            graph = av.filter.Graph()
            src = graph.add_buffer(template=st)
            scale = graph.add("scale", f"{w}:{h}:flags=bicubic")
            fmt = graph.add("format", "rgb24")
            sink = graph.add("buffersink")
            src.link_to(scale)
            scale.link_to(fmt)
            fmt.link_to(sink)
            graph.configure()
        try:
            for frame in c.decode(st):
                if graph is None:
                    yield np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                    n += 1
                else:
                    graph.push(frame)
                    while True:
                        try:
                            out = graph.pull()
                        except (av.BlockingIOError, av.EOFError):
                            break
                        yield np.ascontiguousarray(out.to_ndarray())  # rows may be padded: one block, as before
                        n += 1
                        if max_frames is not None and n >= max_frames:
                            return
                if max_frames is not None and n >= max_frames:
                    return
        except av.FFmpegError as e:
            raise MediaError(f"cannot decode {path} (after frame {n}): {e}") from None


def _ratio(r: Fraction | None) -> str:
    return f"{r.numerator}/{r.denominator}" if r else "0/0"


def _secs(ts: int | None, base: Fraction | None) -> str | None:
    return f"{float(ts * base):.6f}" if ts is not None and base else None


def _open(path: Path):
    av = _av()
    try:
        return av.open(str(path))
    except av.FFmpegError as e:
        raise MediaError(f"cannot read {path}: {e}") from None


def probe(path: str | Path) -> dict:
    """A media file's streams and container, shaped like ``ffprobe -show_format -show_streams`` JSON.

    Read in-process with PyAV. Keys kept from ffprobe: ``format`` (``format_name``, ``duration``,
    ``size``, ``bit_rate``, ``nb_streams``, ``tags``) and ``streams`` (``index``, ``codec_type``,
    ``codec_name``, ``profile``, ``time_base``, ``r_frame_rate``, ``avg_frame_rate``, ``duration``,
    ``nb_frames``, ``bit_rate``, ``tags``; video: ``width``, ``height``, ``pix_fmt``,
    ``has_b_frames``; audio: ``sample_rate``, ``channels``, ``channel_layout``), with ffprobe's
    types (rates, durations and counts as strings).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"media file not found: {path}")
    with _open(path) as c:
        streams = []
        for st in c.streams:
            cc = st.codec_context
            s: dict = {"index": st.index, "codec_type": st.type, "codec_name": cc.name if cc else None,
                       "profile": st.profile, "time_base": _ratio(st.time_base),
                       "r_frame_rate": "0/0", "avg_frame_rate": "0/0",
                       "start_time": _secs(st.start_time, st.time_base),
                       "duration_ts": st.duration, "duration": _secs(st.duration, st.time_base),
                       "nb_frames": str(st.frames) if st.frames else None,
                       "bit_rate": str(cc.bit_rate) if cc and cc.bit_rate else None,
                       "tags": dict(st.metadata)}
            if st.type == "video":
                s.update(width=cc.width, height=cc.height, pix_fmt=cc.pix_fmt,
                         has_b_frames=int(cc.reorder_depth),  # the B-frame delay (PyAV >= 18; has_b_frames is a bool)
                         r_frame_rate=_ratio(st.base_rate), avg_frame_rate=_ratio(st.average_rate))
            elif st.type == "audio":
                s.update(sample_rate=str(cc.sample_rate), channels=cc.channels,
                         channel_layout=cc.layout.name, sample_fmt=cc.format.name if cc.format else None)
            streams.append({k: v for k, v in s.items() if v is not None})
        fmt = {"filename": str(path), "nb_streams": len(streams), "format_name": c.format.name,
               "duration": _secs(c.duration, Fraction(1, 1_000_000)), "size": str(path.stat().st_size),
               "bit_rate": str(c.bit_rate) if c.bit_rate else None, "tags": dict(c.metadata)}
    return {"streams": streams, "format": {k: v for k, v in fmt.items() if v is not None}}


def video_stream(info: dict, path: str | Path = "") -> dict:
    for s in info.get("streams", []):
        if s.get("codec_type") == "video":
            return s
    raise MediaError(f"no video stream in {path}")


def fps_of(stream: dict) -> float:
    num, _, den = str(stream.get("avg_frame_rate") or stream.get("r_frame_rate") or "0/1").partition("/")
    return float(num) / float(den or 1) if float(den or 1) else 0.0


def count_frames(path: str | Path) -> int:
    """Exact number of decoded frames of the first video stream (what ``ffprobe -count_frames`` reports)."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video not found: {path}")
    av = _av()
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"no video stream in {path}")
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        n = 0
        try:
            for _ in c.decode(st):
                n += 1
        except av.FFmpegError as e:
            raise MediaError(f"cannot decode {path} (after frame {n}): {e}") from None
    return n
