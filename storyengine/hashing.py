"""The one file hash: sha256 of a file's bytes, streamed in 1 MiB blocks."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=4096)
def _file_sha(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's content, streamed (memoised on path, size and mtime)."""
    st = os.stat(path)
    return _file_sha(str(path), st.st_size, st.st_mtime_ns)
