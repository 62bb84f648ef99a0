"""Issue 14: writers of the registry serialise. Four `character add` processes at once (two of the same
handle with the same photo, two of other handles): each exits 0 or with a one-line `error:`, every
committed photo row's file exists, no stray file is left, and `PRAGMA integrity_check` is ok."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import save
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_parallel_character_add(tmp_path, astronaut, hopper):
    ws = tmp_path / "ws"
    (ws / "characters").mkdir(parents=True)
    small = lambda a, w: np.asarray(Image.fromarray(a).resize((w, int(a.shape[0] * w / a.shape[1]))))  # noqa: E731
    ann = save(tmp_path / "ann.png", astronaut)
    bob = save(tmp_path / "bob.png", small(hopper, 300))
    cid = save(tmp_path / "cid.png", small(np.ascontiguousarray(hopper[:, ::-1]), 320))
    jobs = [("ann", ann), ("ann", ann), ("bob", bob), ("cid", cid)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", "from storyengine.cli import app; app()", "character", "add", h,
                               str(p), "-w", str(ws)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for h, p in jobs]
    results = [(p.wait(timeout=240), p.stdout.read(), p.stderr.read()) for p in procs]
    for rc, out, err in results:
        assert "Traceback" not in err, err
        if rc != 0:
            assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1, (rc, err)
    assert sum(rc == 0 for rc, _, _ in results) >= 3, results  # one of the two "ann" may lose, nobody else
    db = sqlite3.connect(ws / "characters" / "registry.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        handles = sorted(r[0] for r in db.execute("select handle from characters"))
        rows = db.execute("select handle, path from photos").fetchall()
    finally:
        db.close()
    assert handles == ["ann", "bob", "cid"]
    assert sorted(h for h, _ in rows) == ["ann", "bob", "cid"]  # the same photo of ann is stored once
    for _, path in rows:
        assert (ws / path).is_file(), path
    files = sorted(str(p.relative_to(ws)) for p in (ws / "characters").rglob("*") if p.is_file()
                   and not p.name.startswith(("registry.db", ".registry.lock")))
    assert files == sorted(path for _, path in rows)  # no stray or temp file either
