"""dlib's face descriptor in a second process, so full-mode checking uses both cores.

dlib's ResNet descriptor (~100 ms per 150x150 chip on one core) holds the GIL while it runs, so a
*thread* computing descriptors barely overlaps the main thread's decoding, detection and alignment.
This module runs it in one persistent worker subprocess instead, started lazily once per process:

    [sys.executable, "-m", "storyengine.encoders.descriptor_worker"]

(not ``multiprocessing``: its spawn start method re-imports the user's ``__main__``). The protocol
is binary and length-prefixed over the worker's stdin/stdout (native byte order, both ends are
the same machine):

* request: ``<I n> <I h> <I w>`` then ``n*h*w*3`` bytes of RGB uint8 chips;
* reply: ``<I 0> <I n>`` then ``n*128`` float32 raw descriptors (the parent L2-normalises them
  exactly as :meth:`DlibFaceEncoder.embed_chips` does, so vectors are identical bit for bit); or
  ``<I 1> <I len>`` then a UTF-8 error message;
* the first reply, before any request, is the handshake ``<I 0> <I 0>`` once the model loaded.

The parent (:func:`descriptors`) writes a batch and blocks reading the reply; pipe I/O releases the
GIL, so the caller's embedding thread costs the main thread nothing while the worker computes.
The worker ignores SIGINT (Ctrl-C reaches the parent, which stops it), exits when its stdin closes
(the parent finished or died), and :mod:`atexit` closes it. If it dies mid-batch the batch is
computed in-process instead (a warning with the tail of the worker's stderr is logged) and a new
worker is started for the next batch; if two workers in a row cannot even start, the process stops
trying and computes in-process from then on. ``STORYENGINE_DESCRIPTOR_WORKER=0`` turns the worker off.
"""

from __future__ import annotations

import atexit
import logging
import os
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import EncoderError

DIM = 128
_HDR = struct.Struct("=III")
_REPLY = struct.Struct("=II")
_log = logging.getLogger("storyengine")


def enabled() -> bool:
    """Whether tracked checking sends descriptors to the worker (``STORYENGINE_DESCRIPTOR_WORKER=0``: no)."""
    return os.environ.get("STORYENGINE_DESCRIPTOR_WORKER", "1").strip().lower() not in ("0", "false", "no", "off")


# ------------------------------------------------------------------ parent side
class WorkerDied(EncoderError):
    """The worker process exited or stopped answering; the message says how, with its stderr's tail."""


def _read_exact(f, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


class DescriptorWorker:
    """One worker process and its pipes; :meth:`compute` is serialised by a lock (one request at a time)."""

    def __init__(self) -> None:
        self._err = tempfile.TemporaryFile()  # the worker's stderr, read back only when it fails
        pkg_root = str(Path(__file__).resolve().parents[2])  # so the child imports this same storyengine
        env = dict(os.environ)
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-m", "storyengine.encoders.descriptor_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env)
        self.pid = self.proc.pid
        self.owner = os.getpid()  # a forked child must not share these pipes
        self._lock = threading.Lock()
        self._ready = False

    def _stderr_tail(self, n: int = 800) -> str:
        try:
            self._err.seek(0)
            return self._err.read().decode("utf-8", "replace")[-n:].strip()
        except (OSError, ValueError):
            return ""

    def _died(self, what: str) -> WorkerDied:
        try:
            rc = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        tail = self._stderr_tail()
        self.close()
        return WorkerDied(f"the dlib descriptor worker (pid {self.pid}) {what} (exit status {rc})"
                          + (f": {tail}" if tail else ""))

    def _reply(self) -> tuple[int, int]:
        head = _read_exact(self.proc.stdout, _REPLY.size)
        if len(head) < _REPLY.size:
            raise self._died("stopped before answering")
        return _REPLY.unpack(head)

    def compute(self, chips: list[np.ndarray]) -> np.ndarray:
        """Raw (not normalised) float32 descriptors of same-sized RGB uint8 chips, shape (n, 128)."""
        with self._lock:
            if self.proc.stdin is None or self.proc.stdin.closed:
                raise WorkerDied(f"the dlib descriptor worker (pid {self.pid}) was closed")
            if not self._ready:
                status, n = self._reply()
                if status != 0:
                    raise WorkerDied(f"the dlib descriptor worker could not start: "
                                     f"{_read_exact(self.proc.stdout, n).decode('utf-8', 'replace')}")
                self._ready = True
            h, w = chips[0].shape[:2]
            data = b"".join(np.ascontiguousarray(c, dtype=np.uint8).tobytes() for c in chips)
            if any(c.shape != (h, w, 3) for c in chips):
                raise EncoderError(f"descriptor chips must share one shape, got {sorted({c.shape for c in chips})}")
            try:
                self.proc.stdin.write(_HDR.pack(len(chips), h, w) + data)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                raise self._died("stopped while receiving chips") from None
            status, n = self._reply()
            if status != 0:
                raise EncoderError(f"dlib descriptor worker: {_read_exact(self.proc.stdout, n).decode('utf-8', 'replace')}")
            raw = _read_exact(self.proc.stdout, n * DIM * 4)
            if n != len(chips) or len(raw) < n * DIM * 4:
                raise self._died(f"sent {n} of {len(chips)} descriptors")
            return np.frombuffer(raw, dtype=np.float32).reshape(n, DIM).copy()

    def alive(self) -> bool:
        return self.proc.poll() is None and self.proc.stdin is not None and not self.proc.stdin.closed

    def close(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits), wait for it (no zombie), kill it if it does not go."""
        if self.owner != os.getpid():
            return  # a forked copy: the process belongs to the parent
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self._err):
            try:
                if f:
                    f.close()
            except OSError:
                pass


_WORKER: DescriptorWorker | None = None
_STATE = threading.Lock()
_BROKEN = False  # workers could not start in this process: stop trying
_START_FAILS = 0  # workers in a row that died or failed before their handshake
MAX_START_FAILS = 2


def worker() -> DescriptorWorker:
    """The process's worker, started (or restarted after a death, or after a fork) on first use."""
    global _WORKER
    with _STATE:
        if _WORKER is None or _WORKER.owner != os.getpid() or not _WORKER.alive():
            if _WORKER is not None and _WORKER.owner == os.getpid():
                _WORKER.close(timeout=1)
            _WORKER = DescriptorWorker()
        return _WORKER


def shutdown() -> None:
    """Stop the worker (registered with :mod:`atexit`; also safe to call any time)."""
    global _WORKER
    with _STATE:
        w, _WORKER = _WORKER, None
    if w is not None:
        w.close()


atexit.register(shutdown)


def available() -> bool:
    return enabled() and not _BROKEN


def descriptors(chips: list[np.ndarray]) -> np.ndarray:
    """Raw float32 descriptors from the worker; raises :class:`WorkerDied` when it died (restarted next call)."""
    global _BROKEN, _START_FAILS
    w = worker()
    try:
        out = w.compute(chips)
    except WorkerDied:
        if not w._ready:
            _START_FAILS += 1
            _BROKEN = _START_FAILS >= MAX_START_FAILS  # they never come up: in-process from now on
        raise
    _START_FAILS = 0
    return out


def prestart() -> None:
    """Start the worker now (its model loads while the caller decodes its first frames)."""
    if available():
        try:
            worker()
        except OSError as e:  # pragma: no cover - cannot exec the interpreter
            _log.warning("descriptor worker not started: %s", e)


# ------------------------------------------------------------------ worker side
def _serve() -> int:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which closes our stdin
    inp = sys.stdin.buffer
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb")  # the replies' pipe, on its own descriptor
    os.dup2(2, 1)  # anything a library prints (Python or C) goes to stderr, never into the replies
    sys.stdout = sys.stderr
    try:
        import dlib

        from .dlib_face import models_dir

        rec = dlib.face_recognition_model_v1(str(models_dir() / "dlib_face_recognition_resnet_model_v1.dat"))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        msg = f"{type(e).__name__}: {e}".encode()
        out.write(_REPLY.pack(1, len(msg)) + msg)
        out.flush()
        return 1
    out.write(_REPLY.pack(0, 0))
    out.flush()
    while True:
        head = _read_exact(inp, _HDR.size)
        if len(head) < _HDR.size:
            return 0  # stdin closed: the parent is done (or gone)
        n, h, w = _HDR.unpack(head)
        data = _read_exact(inp, n * h * w * 3)
        if len(data) < n * h * w * 3:
            return 0
        try:
            arr = np.frombuffer(data, dtype=np.uint8).reshape(n, h, w, 3)
            vs = rec.compute_face_descriptor([np.ascontiguousarray(c) for c in arr])
            res = np.stack([np.array(v, dtype=np.float32) for v in vs]).astype(np.float32) if n else np.zeros((0, DIM), np.float32)
            out.write(_REPLY.pack(0, n) + res.tobytes())
        except Exception as e:  # noqa: BLE001 - reported to the parent, the worker stays up
            msg = f"{type(e).__name__}: {e}".encode()
            out.write(_REPLY.pack(1, len(msg)) + msg)
        out.flush()


if __name__ == "__main__":
    sys.exit(_serve())
