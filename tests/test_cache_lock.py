"""Take cache keys, complete-or-absent entries, the workspace lock, and output errors naming the path."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from storyengine.cache import TakeCache, check_key, file_sha256, take_key
from storyengine.errors import OutputError, WorkspaceBusy
from storyengine.lock import WorkspaceLock
from storyengine.specs import CharacterRef, ShotPlan
from storyengine.workspace import Workspace, atomic_path

from conftest import save


class _Backend:
    backend_id = "fake"
    version = "1"

    def options_for(self, plan):
        from pydantic import BaseModel

        class O(BaseModel):
            strength: float = 1.0

        return O(**plan.backend_options)


def _plan(still, photo, **kw) -> ShotPlan:
    base = dict(series="s", episode_id="e1", shot_id="a", index=0, still=str(still),
                characters=[CharacterRef(handle="mara", name="Mara", kind="person", photos=[str(photo)])],
                prompt="", seed=7, fps=24, width=64, height=36, num_frames=24, duration=1.0, min_frames=12,
                backend="fake")
    return ShotPlan(**{**base, **kw})


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    still = save(tmp_path / "still.png", rng.integers(0, 255, (36, 64, 3), dtype=np.uint8))
    photo = save(tmp_path / "photo.png", rng.integers(0, 255, (36, 64, 3), dtype=np.uint8))
    return still, photo


def test_take_key_follows_what_determines_frames(tmp_path, files):
    still, photo = files
    b = _Backend()
    k = take_key(_plan(still, photo), b, take_crf=12)
    # position, episode, bound and minimum length only matter to the checker/stitcher
    assert take_key(_plan(still, photo, index=3, episode_id="e9", bound=0.5, min_frames=20), b, take_crf=12) == k
    # a copy of the still under another name is the same input
    copy = tmp_path / "copy.png"
    copy.write_bytes(still.read_bytes())
    assert take_key(_plan(copy, photo), b, take_crf=12) == k
    # everything that changes frames changes the key
    changed = [
        take_key(_plan(still, photo, seed=8), b, take_crf=12),
        take_key(_plan(still, photo, prompt="a breath"), b, take_crf=12),
        take_key(_plan(still, photo, num_frames=25), b, take_crf=12),
        take_key(_plan(still, photo, backend_options={"strength": 0.5}), b, take_crf=12),
        take_key(_plan(still, photo), b, take_crf=18),
        take_key(_plan(photo, photo), b, take_crf=12),
    ]
    assert k not in changed and len(set(changed)) == len(changed)
    b2 = _Backend()
    b2.version = "2"
    assert take_key(_plan(still, photo), b2, take_crf=12) != k
    # editing the still's bytes changes the key even under the same path
    still.write_bytes(photo.read_bytes())
    os.utime(still, ns=(1, 1))
    assert take_key(_plan(still, photo), b, take_crf=12) != k
    assert file_sha256(still) == file_sha256(photo)


def test_check_key_changes_with_bound_not_with_episode(files):
    from storyengine.consistency import Reference
    from storyengine.settings import Settings

    still, photo = files
    v = np.ones((2, 4), np.float32)
    ref = Reference("mara", "dlib-face", v, v.mean(0), 0.9, "test")
    class Enc:
        name, version = "dlib-face", "1"
    assert check_key("f" * 64, [Reference("mara", Enc(), v, v.mean(0), 0.9, "t")], Settings(), _plan(still, photo)) == \
        check_key("f" * 64, [Reference("mara", Enc(), v, v.mean(0), 0.9, "t")], Settings(), _plan(still, photo))
    s = Settings()
    k = check_key("f" * 64, [ref], s, _plan(still, photo))
    assert check_key("f" * 64, [ref], s, _plan(still, photo, episode_id="x")) == k
    assert check_key("f" * 64, [ref], s, _plan(still, photo, bound=0.5)) != k
    assert check_key("f" * 64, [Reference("mara", "dlib-face", v, v.mean(0), 0.8, "test")], s, _plan(still, photo)) != k


def test_cache_entry_is_complete_or_absent(tmp_path):
    cache = TakeCache(tmp_path / "cache")
    key = "a" * 64
    assert cache.get(key) is None
    with atomic_path(cache.path_for(key)) as tmp:
        tmp.write_bytes(b"x" * 100)
    assert cache.get(key) is None  # the mp4 without its metadata is not an entry yet
    e = cache.put(key, cache.path_for(key), {"frames": 24})
    got = cache.get(key)
    assert got is not None and got.meta["frames"] == 24 and got.meta["size"] == 100
    cache.add_check(got, "c" * 64, {"decision": "accept"})
    assert cache.get(key).verdict("c" * 64) == {"decision": "accept"}
    # a truncated file no longer matches its recorded size
    with open(e.path, "r+b") as f:
        f.truncate(50)
    assert cache.get(key) is None
    (cache.takes / ".stray.mp4.tmp").write_bytes(b"half")
    assert cache.sweep() == 1
    with pytest.raises(ValueError):
        cache.get("../../etc/passwd")


def test_second_lock_holder_gets_a_clear_message(tmp_path):
    ws = Workspace.at(tmp_path).ensure()
    with WorkspaceLock(ws):
        with pytest.raises(WorkspaceBusy, match=rf"pid {os.getpid()} .*--wait SECONDS"):
            WorkspaceLock(ws).acquire()
        with pytest.raises(WorkspaceBusy, match="waited 0.3 s"):
            WorkspaceLock(ws, wait=0.3, poll=0.05).acquire()
    with WorkspaceLock(ws):  # released: free again
        pass


def test_lock_of_a_killed_process_is_free(tmp_path):
    ws = Workspace.at(tmp_path).ensure()
    code = textwrap.dedent(f"""
        import os, sys, time
        from storyengine.lock import WorkspaceLock
        from storyengine.workspace import Workspace
        WorkspaceLock(Workspace.at({str(tmp_path)!r})).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    with pytest.raises(WorkspaceBusy, match=f"pid {p.pid}"):
        WorkspaceLock(ws).acquire()
    p.kill()
    p.wait()
    with WorkspaceLock(ws, wait=2):
        pass


def test_unwritable_and_full_outputs_name_the_path(tmp_path):
    blocker = tmp_path / "renders"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=f"cannot write into {blocker}/s"):
        with atomic_path(blocker / "s" / "e.mp4") as tmp:
            tmp.write_bytes(b"x")
    # a file-size limit makes the write fail like a full disk: nothing is kept under either name
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from pathlib import Path
        from storyengine.errors import OutputError
        from storyengine.workspace import atomic_path
        try:
            with atomic_path(Path({str(out)!r}) / "big.bin") as tmp:
                with open(tmp, "wb") as f:
                    f.write(b"x" * 100000)
        except OutputError as e:
            print(e)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert f"cannot write {out}/big.bin: File too large (file too large / disk full); nothing was kept" in res.stdout, res.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_follow_the_umask(tmp_path, umask, mode):
    """temp + rename gives the mode open() would (0666 less the umask), not mkstemp's fixed 0600."""
    import stat

    from storyengine.provenance import _write_file

    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "report.json") as tmp:
            tmp.write_text("{}")
        _write_file(tmp_path / "chain.pem", b"cert", 0o644)
        _write_file(tmp_path / "key.pem", b"key", 0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "chain.pem").stat().st_mode) == 0o644 & ~umask
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600  # a private key never opens up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.pem", "key.pem", "report.json"]
