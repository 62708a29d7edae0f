"""Fixtures for the FUSE mount tests.

Every test drives the real binary ($ARTIFS_BIN, set by CMake) against stores
in temporary directories and mounts them with `artifs mount`.  A mount that
cannot be made is a test failure, never a skip: CI must notice a runner
without /dev/fuse.

Whatever a test does, its mounts are unmounted in teardown (fusermount3 -u,
then -uz), the daemon must then exit within 10 s (it is killed otherwise,
and the test fails), and sanitizer reports (an ASan build) fail the test.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mountutil import (SRC_ROOT, Artifs, Mount, _binary, _kill, daemon_pids,  # noqa: F401
                       is_artifs_mount, make_env, mounts_of_type, sanitizer_reports,
                       unmount_and_reap, wait_for)


@pytest.fixture(scope="session")
def artifs_bin():
    b = _binary()
    if not b.is_file():
        pytest.fail(f"artifs binary not found ({b}): set ARTIFS_BIN (ctest does this)",
                    pytrace=False)
    return b


@pytest.fixture(scope="session")
def mount_helper():
    h = Path(os.environ.get("ARTIFS_MOUNT_HELPER") or SRC_ROOT / "fs" / "mount.fuse.artifs")
    if not h.is_file():
        pytest.fail(f"mount helper not found ({h}): set ARTIFS_MOUNT_HELPER", pytrace=False)
    return h


@pytest.fixture(scope="session", autouse=True)
def fuse_available(tmp_path_factory):
    """No FUSE is a failure (not a skip); so is a leftover mount after the run."""
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: the mount tests need FUSE", pytrace=False)
    if not shutil.which("fusermount3"):
        pytest.fail("fusermount3 is not installed (package fuse3)", pytrace=False)
    yield
    # safety net: nothing of ours may survive the session
    base = os.path.realpath(tmp_path_factory.getbasetemp())
    leftovers = [m for m in mounts_of_type("fuse.artifs") if m.startswith(base + "/")]
    for m in leftovers:
        subprocess.run(["fusermount3", "-uz", m], capture_output=True, timeout=60)
    pids = daemon_pids(base)
    for pid in pids:
        _kill(pid)
    assert not leftovers and not pids, f"left behind: mounts {leftovers}, daemons {pids}"


@pytest.fixture
def san_dir(tmp_path):
    return tmp_path / "sanitizer"


@pytest.fixture(autouse=True)
def no_sanitizer_reports(san_dir):
    """Fail a test after which an ASan/LSan/UBSan report was written (CLI or daemon)."""
    yield
    reports = sanitizer_reports(san_dir)
    if reports:
        pytest.fail("sanitizer report:\n" + "\n".join(reports), pytrace=False)


@pytest.fixture
def env(tmp_path, san_dir):
    return make_env(tmp_path, san_dir)


@pytest.fixture
def store(artifs_bin, tmp_path, env):
    """A new, initialised store in tmp_path (an Artifs runner for it)."""
    return Artifs(artifs_bin, tmp_path / "store", env).init()


@pytest.fixture
def mounter(artifs_bin, tmp_path, env, san_dir):
    """
    mounter(store_dir, mp=None, daemon=False, args=(), log=True) -> Mount

    Mounts and waits until the mount is in /proc/self/mountinfo: by default
    with --foreground under Popen (stderr to a file: UBSan reports of an
    ASan+UBSan build go to stderr whatever UBSAN_OPTIONS says, so a detached
    daemon would lose them), with daemon=True detached as users run it.  Both
    log with --log to a file in tmp_path unless log=False.

    Every mount made (or attempted) is torn down after the test; the test
    fails if a daemon does not exit, a foreground one exits non-zero, or a
    sanitizer reported anything.
    """
    mounts = []
    counter = [0]

    def mount(store_dir, mp=None, daemon=False, args=(), log=True):
        foreground = not daemon
        counter[0] += 1
        n = counter[0]
        if mp is None:
            mp = tmp_path / f"mnt{n}"
            mp.mkdir()
        logf = tmp_path / f"mount{n}.log" if log else None
        m = Mount(mp, store_dir, logf, env)
        mounts.append(m)
        cmd = [str(artifs_bin), "--store", str(store_dir), "mount", str(mp)]
        cmd += (["--log", str(logf)] if logf else []) + list(args)
        if foreground:
            m.stderr = tmp_path / f"mount{n}.stderr"
            with open(m.stderr, "wb") as err:
                m.proc = subprocess.Popen(cmd + ["--foreground"], env=env, stdin=subprocess.DEVNULL,
                                          stdout=err, stderr=err)
            m.pid = m.proc.pid
            up = wait_for(lambda: is_artifs_mount(mp) or m.proc.poll() is not None, 30)
            if not is_artifs_mount(mp):
                pytest.fail(f"mount --foreground did not come up (exit {m.proc.poll()}, "
                            f"up={up}): {m.stderr.read_text(errors='replace')}", pytrace=False)
        else:
            p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            if p.returncode != 0:
                pytest.fail(f"artifs mount failed (exit {p.returncode}): "
                            f"{p.stderr.decode(errors='replace')}", pytrace=False)
            # the daemon detaches once the mount is up: no waiting for it
            if not is_artifs_mount(mp):
                late = wait_for(lambda: is_artifs_mount(mp), 30)
                pytest.fail(f"{mp} is not in /proc/self/mountinfo when 'artifs mount' returns "
                            f"({'it came later' if late else 'nor 30 s later'})", pytrace=False)
            if not m.find_pid():
                pytest.fail(f"cannot find the daemon of {mp} (log: {m.log_text()!r})", pytrace=False)
        return m

    mount.mounts = mounts
    yield mount

    problems = []
    for m in reversed(mounts):
        problems += unmount_and_reap(m)
        if m.proc is not None and m.proc.returncode not in (0, None) and not m.expect_failure:
            problems.append(f"foreground daemon of {m.path} exited with status {m.proc.returncode}: "
                            f"{m.stderr.read_text(errors='replace')[-3000:]}")
    reports = sanitizer_reports(*[m.log for m in mounts if m.log],
                                *[m.stderr for m in mounts if m.stderr])
    problems += [f"sanitizer report: {r}" for r in reports]
    if problems:
        pytest.fail("mount teardown: " + "\n".join(problems), pytrace=False)


@pytest.fixture
def mounted(store, mounter):
    """The test's store (see `store`), mounted (--foreground under Popen, --log)."""
    return mounter(store.store)
