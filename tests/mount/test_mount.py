"""The read-only FUSE mount, compared byte for byte with the trees committed.

Data comes from fixed seeds, so a failure reproduces with the same bytes.
"""

import errno
import json
import mmap
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mountcheck
from mountutil import (Artifs, Mount, daemon_pids, errno_of, evict, is_artifs_mount, make_env,
                       pid_running, mount_entry, run, sanitizer_reports, staged_chunks,
                       unmount_and_reap, wait_for)

MiB = 1 << 20
HERE = Path(__file__).resolve().parent
LIVE_WAIT = 2.0     # a moved branch must show within this many seconds


# ---- building trees ------------------------------------------------------------

def _p(root, rel):
    return os.path.join(os.fsencode(root), os.fsencode(rel))


def put(root, rel, data=b"", mode=0o644):
    p = _p(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if os.path.lexists(p):
        os.unlink(p)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)


def mkdir(root, rel):
    os.makedirs(_p(root, rel), exist_ok=True)


def symlink(root, rel, target):
    p = _p(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if os.path.lexists(p):
        os.unlink(p)
    os.symlink(os.fsencode(target), p)


LONG_ASCII = "L" * 251 + ".txt"         # 255 bytes
LONG_UTF8 = "é" * 127 + "x"             # 255 bytes, 128 characters
assert len(LONG_ASCII.encode()) == 255 and len(LONG_UTF8.encode()) == 255


def build_v1(root):
    rnd = random.Random(1234)
    put(root, "README.txt", b"artifs mount test tree, version 1\n")
    put(root, "empty.txt")
    mkdir(root, "emptydir")
    put(root, "nested/empty-inside")
    put(root, "nested/a/b/c/d/e/f/g/h/deep.txt", b"deep\n" * 100)
    mkdir(root, "nested/a/b/c/d/e/f/g/h/empty-leaf")
    put(root, "unicodé/日本語.txt", "こんにちは\n".encode() * 10)
    put(root, "unicodé/emoji-😀.bin", rnd.randbytes(5000))
    put(root, "Ωmega/ñandú", b"n\n")
    put(root, "with space & 'quotes'", b"spaces\n")
    put(root, "new\nline", b"newline in the name\n")
    put(root, "tab\tname", b"tab\n")
    put(root, "back\\slash", b"backslash\n")
    put(root, b"latin1-\xe9.bin", b"not UTF-8\n")
    put(root, "long/" + LONG_ASCII, b"255 bytes of name\n")
    put(root, "long/" + LONG_UTF8, b"255 bytes of UTF-8 name\n")
    put(root, "bin/run.sh", b"#!/bin/sh\necho hello\n", 0o755)
    put(root, "bin/tool", rnd.randbytes(70000), 0o700)
    put(root, "bin/group-x", b"group may run me\n", 0o610)
    symlink(root, "links/rel", "../README.txt")
    symlink(root, "links/abs", "/etc/hostname")
    symlink(root, "links/dangling", "no/such/file")
    symlink(root, "links/dir", "../nested")
    symlink(root, "links/unicode", "../unicodé/日本語.txt")
    symlink(root, "links/long", "t/" * 1999 + "x")     # 3999-byte target
    symlink(root, "links/loop", "loop")
    put(root, "huge/blob.bin", rnd.randbytes(64 * MiB))
    put(root, "medium/one-mib-plus-one", rnd.randbytes(MiB + 1))
    put(root, "medium/zeros-3mib", bytes(3 * MiB))
    dup = rnd.randbytes(300 * 1024)
    put(root, "medium/dup-a", dup)
    put(root, "medium/dup-b", dup)
    put(root, "medium/4097", rnd.randbytes(4097))
    for i in range(2000):
        put(root, f"many/f{i:04d}", rnd.randbytes(rnd.choice((0, rnd.randrange(1, 4097)))))
    put(root, "swap", b"a file in v1, a directory in v2\n")
    put(root, "swapdir/inner/file.txt", b"a directory in v1, a file in v2\n")


def build_v2(v1, root):
    """v1 with changes of every kind."""
    shutil.copytree(os.fsencode(v1), os.fsencode(root), symlinks=True)
    rnd = random.Random(5678)
    put(root, "README.txt", b"artifs mount test tree, version 2 (changed)\n")
    with open(_p(v1, "huge/blob.bin"), "rb") as f:
        huge = bytearray(f.read())
    huge[20 * MiB:21 * MiB] = rnd.randbytes(MiB)           # 1 MiB changed in place
    huge += rnd.randbytes(12345)                            # and a tail appended
    put(root, "huge/blob.bin", bytes(huge))
    for i in range(10):
        os.unlink(_p(root, f"many/f{i:04d}"))
    for i in range(10, 20):
        put(root, f"many/f{i:04d}", rnd.randbytes(777 + i))
    for i in range(10):
        put(root, f"many/n{i:04d}", rnd.randbytes(100 + i))
    put(root, "added/x/y.txt", b"new in v2\n")
    shutil.rmtree(_p(root, "emptydir"))
    symlink(root, "links/rel", "../empty.txt")
    os.chmod(_p(root, "bin/tool"), 0o644)                   # no longer executable
    os.chmod(_p(root, "medium/4097"), 0o755)                # now executable
    os.unlink(_p(root, "swap"))
    put(root, "swap/now-a-dir.txt", b"swap is a directory now\n")
    shutil.rmtree(_p(root, "swapdir"))
    put(root, "swapdir", b"swapdir is a file now\n")


class Big:
    pass


@pytest.fixture(scope="module")
def big(artifs_bin, tmp_path_factory):
    """
    One store, built once: datasets/big with v1 (tag v1, branch dev) and v2
    (main, tag v2); models/tiny; datasets/unborn without commits.
    """
    b = Big()
    b.root = tmp_path_factory.mktemp("big")
    b.san = b.root / "sanitizer"
    b.env = make_env(b.root, b.san)
    b.src1, b.src2 = b.root / "v1", b.root / "v2"
    build_v1(b.src1)
    build_v2(b.src1, b.src2)
    a = b.a = Artifs(artifs_bin, b.root / "store", b.env).init()
    b.store = a.store
    b.repo = "datasets/big"
    a.create("dataset", "big")
    b.id1 = a.commit(b.repo, b.src1, "v1")
    a.tag(b.repo, "v1")
    a.branch(b.repo, "dev")
    # commit times have 1 s resolution: make v2's differ from v1's
    t1 = a.show(b.repo + "@v1")["time"]
    wait_for(lambda: time.time() >= t1 + 1, 2)
    b.id2 = a.commit(b.repo, b.src2, "v2")
    a.tag(b.repo, "v2")
    b.t1 = a.show(b.repo + "@v1")["time"]
    b.t2 = a.show(b.repo + "@v2")["time"]
    a.create("model", "tiny")
    b.tiny_src = b.root / "tiny"
    put(b.tiny_src, "weights.bin", random.Random(9).randbytes(10000))
    b.tiny_id = a.commit("models/tiny", b.tiny_src, "tiny")
    a.create("dataset", "unborn")
    assert b.t2 > b.t1
    b.refs = {"main": (b.src2, b.t2, b.id2), "v2": (b.src2, b.t2, b.id2),
              "v1": (b.src1, b.t1, b.id1), "dev": (b.src1, b.t1, b.id1)}
    yield b
    reports = sanitizer_reports(b.san)
    shutil.rmtree(b.root, ignore_errors=True)
    assert not reports, "\n".join(reports)


@pytest.fixture
def big_mount(big, mounter):
    return mounter(big.store)


# ---- comparing ----------------------------------------------------------------------

def find_listing(d):
    """find's view: type, size (not for directories) and path of every entry, sorted."""
    out = run(["find", d, "-mindepth", "1", "(", "-type", "d", "-printf", r"d - %P\0", ")",
               "-o", "-printf", r"%y %s %P\0"]).stdout
    return sorted(out.split(b"\0")[:-1])


def check_attrs(src, vdir, ctime):
    """lstat of every entry: types, modes, sizes, mtimes, link targets.  Problems found."""
    src, vdir = os.fsencode(src), os.fsencode(vdir)
    bad = []
    st = os.lstat(vdir)
    if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != 0o555 or st.st_mtime_ns != ctime * 10**9:
        bad.append(f"version root: mode {oct(st.st_mode)} mtime {st.st_mtime_ns}")
    n = 0
    for dirpath, dirnames, filenames in os.walk(vdir):
        for name in dirnames + filenames:
            n += 1
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, vdir)
            s, m = os.lstat(os.path.join(src, rel)), os.lstat(p)
            what = rel.decode(errors="replace")
            if m.st_mtime_ns != ctime * 10**9:
                bad.append(f"{what}: mtime {m.st_mtime_ns}, commit time {ctime}")
            if stat.S_ISLNK(s.st_mode):
                if not stat.S_ISLNK(m.st_mode):
                    bad.append(f"{what}: not a symlink")
                elif os.readlink(p) != os.readlink(os.path.join(src, rel)):
                    bad.append(f"{what}: link target {os.readlink(p)!r}")
                elif m.st_size != s.st_size:
                    bad.append(f"{what}: link size {m.st_size}, wanted {s.st_size}")
            elif stat.S_ISDIR(s.st_mode):
                if not stat.S_ISDIR(m.st_mode) or stat.S_IMODE(m.st_mode) != 0o555:
                    bad.append(f"{what}: directory mode {oct(m.st_mode)}")
            else:
                want = 0o555 if s.st_mode & 0o111 else 0o444
                if not stat.S_ISREG(m.st_mode) or stat.S_IMODE(m.st_mode) != want:
                    bad.append(f"{what}: mode {oct(m.st_mode)}, wanted {oct(want)}")
                if m.st_size != s.st_size:
                    bad.append(f"{what}: size {m.st_size}, wanted {s.st_size}")
    return n, bad


def diff_r(a, b):
    p = run(["diff", "-r", "--no-dereference", a, b], rc=None)
    assert p.returncode == 0 and not p.stdout and not p.stderr, (
        f"diff -r {a} {b}: exit {p.returncode}\n{p.stdout[:3000].decode(errors='replace')}"
        f"{p.stderr[:2000].decode(errors='replace')}")


def compare_version(src, vdir, ctime, tmp):
    """Everything a user could compare between the source tree and a mounted version."""
    diff_r(src, vdir)
    run(["cmp", src / "huge/blob.bin", vdir / "huge/blob.bin"])
    assert find_listing(vdir) == find_listing(src)
    n, bad = check_attrs(src, vdir, ctime)
    assert not bad, f"{len(bad)} attribute problems, e.g.\n" + "\n".join(bad[:20])
    assert n > 2000
    # stat(1) agrees with the source on sizes
    names = ["huge/blob.bin", "medium/one-mib-plus-one", "empty.txt", "links/long", "links/rel"]
    fmt = ["stat", "-c", "%s %F"]
    assert run(fmt + [vdir / x for x in names]).stdout == run(fmt + [src / x for x in names]).stdout
    # tar of the mount extracts to the same tree, with the commit's times and modes
    out = tmp / "untar"
    out.mkdir()
    p = run(["bash", "-o", "pipefail", "-c", 'tar -C "$1" -cf - . | tar -C "$2" -xf -', "tar",
             vdir, out])
    assert not p.stderr, p.stderr
    diff_r(src, out)
    st = os.stat(out / "huge/blob.bin")
    assert st.st_mtime == ctime and stat.S_IMODE(st.st_mode) == 0o444
    assert stat.S_IMODE(os.stat(out / "bin/run.sh").st_mode) == 0o555
    shutil.rmtree(out)
    # reads at odd offsets and lengths (across chunk boundaries) and through mmap
    rnd = random.Random(42)
    with open(src / "huge/blob.bin", "rb") as fs_, open(vdir / "huge/blob.bin", "rb") as fm:
        size = os.fstat(fs_.fileno()).st_size
        for _ in range(200):
            off = rnd.randrange(0, size + 10)
            ln = rnd.choice((1, 7, 4095, 4097, 65536, 300000, 2 * MiB + 3))
            assert os.pread(fm.fileno(), ln, off) == os.pread(fs_.fileno(), ln, off), (off, ln)
    with open(vdir / "medium/one-mib-plus-one", "rb") as f:
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            assert mm[:] == (src / "medium/one-mib-plus-one").read_bytes()


# ---- 1. versions, byte for byte ------------------------------------------------------

@pytest.mark.parametrize("ref", ["main", "v1", "v2", "dev"])
def test_versions_equal_sources(big, big_mount, ref, tmp_path):
    src, ctime, cid = big.refs[ref]
    vdir = big_mount.path / big.repo / ref
    compare_version(src, vdir, ctime, tmp_path)
    # the versions really differ where v2 changed things
    if ref in ("main", "v2"):
        assert os.path.isdir(vdir / "swap") and os.path.isfile(vdir / "swapdir")
        assert not os.path.exists(vdir / "emptydir") and not os.path.exists(vdir / "many/f0000")
        assert stat.S_IMODE(os.stat(vdir / "bin/tool").st_mode) == 0o444
        assert stat.S_IMODE(os.stat(vdir / "medium/4097").st_mode) == 0o555
    else:
        assert os.path.isfile(vdir / "swap") and os.path.isdir(vdir / "swapdir")
        assert os.listdir(vdir / "emptydir") == []
        assert stat.S_IMODE(os.stat(vdir / "bin/tool").st_mode) == 0o555
        assert stat.S_IMODE(os.stat(vdir / "bin/group-x").st_mode) == 0o555
    assert os.readlink(vdir / "links/rel") == ("../empty.txt" if ref in ("main", "v2") else "../README.txt")
    # the executable runs from the mount
    assert run([vdir / "bin/run.sh"]).stdout == b"hello\n"


# ---- 2. .commits -------------------------------------------------------------------------

@pytest.mark.parametrize("which", [1, 2])
def test_commits_by_id_and_prefix(big, big_mount, which):
    commits = big_mount.path / big.repo / ".commits"
    listing = os.listdir(commits)
    assert big.id1 in listing and big.id2 in listing and big.tiny_id not in listing
    assert listing == sorted(listing)
    # one version per mount: see test_mtime_is_the_viewed_commits_time
    for cid, src, ctime in [(big.id1, big.src1, big.t1), (big.id2, big.src2, big.t2)][which - 1:which]:
        full = commits / cid
        diff_r(src, full)
        for n in (6, 7, 12, 31):
            pre = commits / cid[:n]
            assert os.stat(pre).st_mtime == ctime
            assert sorted(os.listdir(pre)) == sorted(os.listdir(full))
            diff_r(full, pre)
        n, bad = check_attrs(src, full, ctime)
        assert not bad, bad[:20]
    # models have .commits too
    diff_r(big.tiny_src, big_mount.path / "models/tiny/.commits" / big.tiny_id[:8])

    known = (big.id1, big.id2, big.tiny_id)
    absent = next(f"{i:06x}" for i in range(1 << 24) if not any(k.startswith(f"{i:06x}") for k in known))
    bad = [absent, absent + "0" * 26,                 # matches no commit
           big.id1[:5],                                # too short
           big.id1 + "0",                              # too long
           big.id1[:-1] + ("0" if big.id1[-1] != "0" else "1"),   # full id, one digit off
           "zzzzzz", "main", "v1", "..commits",        # not hex
           big.tiny_id, big.tiny_id[:8]]               # a commit of another repository
    for name in bad:
        for fn in (os.stat, os.listdir):
            assert errno_of(fn, commits / name) == errno.ENOENT, (name, fn)
    p = run(["ls", commits / absent], rc=2)
    assert b"No such file or directory" in p.stderr
    assert os.listdir(big_mount.path / "datasets/unborn/.commits") == []


def test_commits_dir_takes_only_ids(store, mounter, tmp_path):
    """A branch or tag named like hex is not a commit id under .commits/."""
    src = tmp_path / "src"
    put(src, "f", b"1\n")
    store.create("dataset", "r")
    id1 = store.commit("datasets/r", src, "one")
    names = [n for n in ("cafe0123", "beef4567") if not id1.startswith(n)]
    store.branch("datasets/r", names[0])
    store.tag("datasets/r", names[1])
    m = mounter(store.store)
    commits = m.path / "datasets/r/.commits"
    for n in names:
        assert (m.path / "datasets/r" / n / "f").read_bytes() == b"1\n"      # the refs work
        assert errno_of(os.stat, commits / n) == errno.ENOENT, f".commits/{n} is a ref, no commit id"
    assert (commits / id1[:6] / "f").read_bytes() == b"1\n"
    # a branch named exactly like the commit's id prefix does not hide the commit
    put(src, "f", b"2\n")
    store.commit("datasets/r", src, "two")
    store.branch("datasets/r", id1[:8])
    assert (m.path / "datasets/r" / id1[:8] / "f").read_bytes() == b"2\n"    # the branch
    assert (commits / id1[:8] / "f").read_bytes() == b"1\n"                  # the commit


def test_directory_inodes_are_stable(store, mounter, tmp_path):
    """A directory keeps its st_ino when the kernel forgets it and looks it up
    again (find and os.fwalk compare a stat before and after opening a
    directory and skip it when they differ); readdir's d_ino of a directory
    in a version is its st_ino; the same path in two commits is two
    directories."""
    src = tmp_path / "src"
    put(src, "a/b/c/f", b"1\n")
    put(src, "x/g", b"2\n")
    store.create("dataset", "ino")
    store.commit("datasets/ino", src, "one")
    m = mounter(store.store)
    paths = ["datasets", "datasets/ino", "datasets/ino/main", "datasets/ino/main/a",
             "datasets/ino/main/a/b", "datasets/ino/main/a/b/c", "datasets/ino/main/x"]
    before = {p: os.stat(m.path / p).st_ino for p in paths}
    assert len(set(before.values())) == len(paths), before
    with os.scandir(m.path / "datasets/ino/main") as it:
        d_ino = {e.name: e.inode() for e in it}
    assert d_ino["a"] == before["datasets/ino/main/a"]
    assert d_ino["x"] == before["datasets/ino/main/x"]
    for _ in range(3):
        # unused dentries and inodes go: the daemon gets FORGETs and frees its nodes
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        time.sleep(0.2)
        assert {p: os.stat(m.path / p).st_ino for p in paths} == before
    # a new commit: main is another directory now, the tree below it too
    put(src, "a/b/c/f", b"3\n")
    store.commit("datasets/ino", src, "two")
    assert wait_content(m.path / "datasets/ino/main/a/b/c/f", b"3\n") is not None
    assert os.stat(m.path / "datasets/ino/main").st_ino != before["datasets/ino/main"]
    assert os.stat(m.path / "datasets/ino/main/a").st_ino != before["datasets/ino/main/a"]
    assert os.stat(m.path / "datasets/ino").st_ino == before["datasets/ino"]


# ---- 3. live refs ----------------------------------------------------------------------------

def wait_content(path, want, timeout=LIVE_WAIT):
    """Poll until path holds `want` (bytes); seconds taken, or None."""
    t0 = time.monotonic()

    def ok():
        try:
            return Path(path).read_bytes() == want
        except OSError:
            return False
    return time.monotonic() - t0 if wait_for(ok, timeout, 0.01) else None


def test_live_refs(store, mounted, tmp_path):
    rnd = random.Random(3)
    repo = "datasets/live"
    store.create("dataset", "live")
    v1, v2, v3 = tmp_path / "v1", tmp_path / "v2", tmp_path / "v3"
    old_big = rnd.randbytes(8 * MiB)
    put(v1, "f.txt", b"one\n")
    put(v1, "big.bin", old_big)
    put(v1, "keep.txt", b"unchanged\n")
    put(v1, "gone.txt", b"removed in v2\n")
    put(v1, "sub/inner.txt", b"inner v1\n")
    id1 = store.commit(repo, v1, "v1")
    main = mounted.path / repo / "main"
    diff_r(v1, main)

    # hold the old version open: a file not yet read, and the directory itself
    fd_big = os.open(main / "big.bin", os.O_RDONLY)
    fd_dir = os.open(main, os.O_RDONLY | os.O_DIRECTORY)
    fd_sub = os.open(main / "sub", os.O_RDONLY | os.O_DIRECTORY)
    try:
        put(v2, "f.txt", b"two\n")
        put(v2, "big.bin", rnd.randbytes(8 * MiB))
        put(v2, "keep.txt", b"unchanged\n")
        put(v2, "new.txt", b"new in v2\n")
        put(v2, "sub/inner.txt", b"inner v2\n")
        id2 = store.commit(repo, v2, "v2")
        t2 = store.show(repo + "@main")["time"]
        took = wait_content(main / "f.txt", b"two\n")
        assert took is not None, f"main/ still shows v1 {LIVE_WAIT} s after the commit"
        assert wait_for(lambda: sorted(os.listdir(main)) == sorted(os.listdir(v2)), LIVE_WAIT)
        diff_r(v2, main)
        assert os.stat(main).st_mtime == t2
        # what was open before the commit still reads the old version
        got = b"".join(os.pread(fd_big, MiB, off) for off in range(0, 8 * MiB, MiB))
        assert got == old_big
        assert sorted(os.listdir(fd_dir)) == sorted(os.listdir(v1))
        fd = os.open("f.txt", os.O_RDONLY, dir_fd=fd_dir)
        assert os.read(fd, 100) == b"one\n"
        os.close(fd)
        fd = os.open("inner.txt", os.O_RDONLY, dir_fd=fd_sub)
        assert os.read(fd, 100) == b"inner v1\n"
        os.close(fd)
    finally:
        os.close(fd_big)
        os.close(fd_dir)
        os.close(fd_sub)

    # two commits in a row: the last one wins
    put(v3, "f.txt", b"three\n")
    store.commit(repo, v3, "v3a")
    put(v3, "f.txt", b"four\n")
    id3 = store.commit(repo, v3, "v3b")
    assert wait_content(main / "f.txt", b"four\n") is not None
    assert sorted(os.listdir(main)) == ["f.txt"]

    # a new tag and a new branch: there at once, no waiting
    store.tag(repo, "t-new", id2)
    store.branch(repo, "feature", id1)
    repo_dir = mounted.path / repo
    assert (repo_dir / "t-new/f.txt").read_bytes() == b"two\n"
    assert (repo_dir / "feature/f.txt").read_bytes() == b"one\n"
    assert {"t-new", "feature", "main", ".commits"} <= set(os.listdir(repo_dir))
    assert (repo_dir / ".commits" / id3 / "f.txt").read_bytes() == b"four\n"
    assert id3 in os.listdir(repo_dir / ".commits")

    # a new repository, a new model, and a first commit to an unborn branch
    store.create("dataset", "fresh")
    assert os.listdir(mounted.path / "datasets/fresh/main") == []
    assert wait_for(lambda: "fresh" in os.listdir(mounted.path / "datasets"), LIVE_WAIT)
    store.commit("datasets/fresh", v1, "first")
    assert wait_content(mounted.path / "datasets/fresh/main/f.txt", b"one\n") is not None
    diff_r(v1, mounted.path / "datasets/fresh/main")
    store.create("model", "m2")
    store.commit("models/m2", v2, "m")
    diff_r(v2, mounted.path / "models/m2/main")
    assert wait_for(lambda: "m2" in os.listdir(mounted.path / "models"), LIVE_WAIT)
    print(f"main/ showed the commit after {took:.3f} s")


def test_deleted_branch(store, mounted, tmp_path):
    """A deleted branch leaves the mount within a second; a file open in it
    keeps reading, through gc; a branch made again under the name shows."""
    repo = "datasets/del"
    store.create("dataset", "del")
    v = tmp_path / "v"
    put(v, "f.txt", b"main\n")
    store.commit(repo, v, "m")
    store.branch(repo, "exp")
    big = random.Random(8).randbytes(6 * MiB)
    put(v, "f.txt", b"exp\n")
    put(v, "big.bin", big)
    store.commit(repo + "@exp", v, "e")
    d = mounted.path / repo
    assert (d / "exp/f.txt").read_bytes() == b"exp\n"
    fd = os.open(d / "exp/big.bin", os.O_RDONLY)
    try:
        store.run("branch", "-d", repo, "exp")
        assert wait_for(lambda: not os.path.exists(d / "exp"), LIVE_WAIT), \
            f"exp/ still there {LIVE_WAIT} s after the branch was deleted"
        assert "exp" not in os.listdir(d)
        assert errno_of(os.stat, d / "exp/f.txt") == errno.ENOENT
        store.run("gc")
        got = b"".join(os.pread(fd, MiB, off) for off in range(0, len(big), MiB))
        assert got == big
    finally:
        os.close(fd)
    store.branch(repo, "exp")
    assert (d / "exp/f.txt").read_bytes() == b"main\n"
    assert not os.path.exists(d / "exp/big.bin")


# ---- 4. every write fails -----------------------------------------------------------------------

def test_writes_fail_erofs(store, mounted, tmp_path, tmp_path_factory):
    src = tmp_path / "src"
    put(src, "f.txt", b"content\n")
    put(src, "x.sh", b"#!/bin/sh\necho ran\n", 0o755)
    mkdir(src, "d/e")
    put(src, "d/g.txt", b"g\n")
    symlink(src, "l", "f.txt")
    store.create("dataset", "w")
    cid = store.commit("datasets/w", src, "v")
    head = store.run("log", "datasets/w", "--json").stdout
    M = mounted.path
    v = M / "datasets/w/main"
    f, d, link, ref = v / "f.txt", v / "d", v / "l", M / "datasets/w/main"
    ops = {
        "open O_WRONLY": lambda: os.open(f, os.O_WRONLY),
        "open O_RDWR": lambda: os.open(f, os.O_RDWR),
        "open O_APPEND": lambda: os.open(f, os.O_WRONLY | os.O_APPEND),
        "open O_TRUNC": lambda: os.open(f, os.O_RDONLY | os.O_TRUNC),
        "create": lambda: os.open(v / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644),
        "create O_EXCL": lambda: os.open(v / "new.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644),
        "create in subdir": lambda: os.open(d / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644),
        "create in root": lambda: os.open(M / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644),
        "create in .commits": lambda: os.open(M / "datasets/w/.commits/x", os.O_WRONLY | os.O_CREAT, 0o644),
        "mkdir": lambda: os.mkdir(v / "nd"),
        "mkdir repository": lambda: os.mkdir(M / "datasets/newrepo"),
        "mkdir ref": lambda: os.mkdir(M / "datasets/w/newbranch"),
        "mkdir kind": lambda: os.mkdir(M / "spaces"),
        "rmdir": lambda: os.rmdir(d / "e"),
        "rmdir ref": lambda: os.rmdir(ref),
        "rmdir repository": lambda: os.rmdir(M / "datasets/w"),
        "rmdir commit": lambda: os.rmdir(M / "datasets/w/.commits" / cid),
        "unlink": lambda: os.unlink(f),
        "unlink symlink": lambda: os.unlink(link),
        "rename": lambda: os.rename(f, v / "moved.txt"),
        "rename over": lambda: os.rename(f, v / "x.sh"),
        "rename dir": lambda: os.rename(d, v / "d2"),
        "rename ref": lambda: os.rename(ref, M / "datasets/w/renamed"),
        "rename repository": lambda: os.rename(M / "datasets/w", M / "datasets/w2"),
        "symlink": lambda: os.symlink("f.txt", v / "l2"),
        "link": lambda: os.link(f, v / "hard"),
        "mkfifo": lambda: os.mkfifo(v / "fifo"),
        "chmod": lambda: os.chmod(f, 0o666),
        "chmod dir": lambda: os.chmod(d, 0o777),
        "chmod ref": lambda: os.chmod(ref, 0o777),
        "chown": lambda: os.chown(f, 1, 1),
        "lchown symlink": lambda: os.lchown(link, 1, 1),
        "truncate": lambda: os.truncate(f, 0),
        "truncate grow": lambda: os.truncate(f, 100),
        "utime now": lambda: os.utime(f, None),
        "utime times": lambda: os.utime(f, (1, 1)),
        "utime dir": lambda: os.utime(d, None),
        "setxattr": lambda: os.setxattr(f, "user.x", b"1"),
        "setxattr dir": lambda: os.setxattr(d, "user.x", b"1"),
        "removexattr": lambda: os.removexattr(f, "user.x"),
    }
    seen = {name: errno_of(fn) for name, fn in ops.items()}
    # every one is EROFS on this kernel (the VFS checks the ro mount first)
    wrong = {k: (errno.errorcode.get(e, e) if e else "succeeded") for k, e in seen.items() if e != errno.EROFS}
    assert not wrong, f"not EROFS: {wrong}"
    fd = os.open(f, os.O_RDONLY)
    try:
        assert errno_of(os.fchmod, fd, 0o666) == errno.EROFS
        assert errno_of(os.setxattr, fd, "user.y", b"1") == errno.EROFS
        assert errno_of(os.ftruncate, fd, 0) == errno.EINVAL      # not open for writing
    finally:
        os.close(fd)
    assert not os.access(f, os.W_OK) and not os.access(d, os.W_OK)
    assert os.access(f, os.R_OK) and os.access(v / "x.sh", os.X_OK)
    # modes decide what runs (the mount has no default_permissions: the kernel checks
    # a file's exec bits itself, and access() is answered by the daemon)
    assert not os.access(f, os.X_OK) and os.access(d, os.X_OK | os.R_OK)
    assert errno_of(os.execv, f, [str(f)]) == errno.EACCES
    assert run([v / "x.sh"]).stdout == b"ran\n"
    # and another user reads, lists and runs what everyone may, and nothing else
    # (pytest's temporary directories are private: let others through to the mount)
    top = tmp_path_factory.getbasetemp().parent
    assert top in M.parents, (top, M)
    for a in M.parents:
        os.chmod(a, os.stat(a).st_mode | 0o011)
        if a == top:
            break
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    assert run(as_nobody + ["cat", f]).stdout == (src / "f.txt").read_bytes()
    assert b"g.txt" in run(as_nobody + ["ls", d]).stdout
    assert run(as_nobody + [v / "x.sh"]).stdout == b"ran\n"
    p = run(as_nobody + [f], rc=None)
    assert p.returncode == 126 and b"Permission denied" in p.stderr, p
    p = run(as_nobody + ["test", "-x", f], rc=None)
    assert p.returncode == 1, p
    # ordinary tools say so
    for cmd in (["touch", f], ["rm", "-f", f], ["mkdir", v / "t"], ["sh", "-c", 'echo x > "$1"', "sh", f],
                ["cp", src / "f.txt", v / "copy"], ["mv", f, v / "mv.txt"], ["ln", "-s", "x", v / "ln"]):
        p = run(cmd, rc=None)
        assert p.returncode != 0 and b"Read-only file system" in p.stderr, (cmd, p.stderr)
    # nothing changed, in the mount or in the store
    diff_r(src, v)
    assert store.run("log", "datasets/w", "--json").stdout == head
    assert sorted(os.listdir(M / "datasets")) == ["w"]
    assert sorted(os.listdir(M / "datasets/w")) == [".commits", "main"]


# ---- 5. readers while the store changes ---------------------------------------------------------

def make_version(root, k, prev, rnd):
    """Version k of the concurrency tree; returns the stable files' contents."""
    cur = dict(prev)
    if not cur:
        for d in range(3):
            for i in range(50):
                cur[f"s{d}/f{i:03d}.bin"] = rnd.randbytes(rnd.randrange(0, 64 * 1024))
        cur["big/a.bin"] = rnd.randbytes(MiB)
        cur["big/b.bin"] = rnd.randbytes(3 * MiB)
    else:
        for p in rnd.sample(sorted(cur), len(cur) // 3):
            if p.startswith("big/"):
                b = bytearray(cur[p])
                off = rnd.randrange(0, len(b) - 65536)
                b[off:off + 65536] = rnd.randbytes(65536)
                cur[p] = bytes(b)
            else:
                cur[p] = rnd.randbytes(rnd.randrange(0, 64 * 1024))
    for p, data in cur.items():
        put(root, p, data)
    for i in range(20):
        put(root, f"churn/v{k}_{i:02d}.bin", rnd.randbytes(rnd.randrange(0, 20000)))
    put(root, f"only{k}/x/y.txt", f"only in version {k}\n".encode())
    put(root, "VERSION", f"{k}\n".encode())
    return cur


def test_concurrent_readers(store, mounter, tmp_path):
    NV = 6
    repo = "datasets/conc"
    store.create("dataset", "conc")
    rnd = random.Random(11)
    spec = {"versions": {}, "allowed": {}, "tag": "base", "tag_version": "0"}
    prev = {}
    for k in range(NV + 1):
        prev = make_version(tmp_path / f"v{k}", k, prev, rnd)
        files, dirs = mountcheck.manifest(tmp_path / f"v{k}")
        spec["versions"][str(k)] = {"files": files, "dirs": sorted(dirs)}
    spec["stable"] = sorted(prev)
    spec["allowed"] = {p: sorted({v["files"][p] for v in spec["versions"].values()}) for p in prev}
    store.commit(repo, tmp_path / "v0", "v0")
    store.tag(repo, "base")
    m = mounter(store.store)
    spec["mnt_repo"] = str(m.path / repo)
    spec["max_seconds"] = 400
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    stop_file = tmp_path / "stop"
    stop = threading.Event()
    deadline = time.monotonic() + 400

    counters = [mountcheck.Counters() for _ in range(4)]
    modes = ["snapshot", "path", "snapshot", "path"]

    def thread_main(i):
        try:
            mountcheck.reader_loop(spec["mnt_repo"], spec, modes[i], stop.is_set, counters[i], deadline)
        except Exception as e:  # noqa: BLE001 - counted below
            counters[i].errors.append(f"reader thread crashed: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(4)]
    procs = []
    try:
        for t in threads:
            t.start()
        for mode in ("snapshot", "path"):
            procs.append(subprocess.Popen(
                [sys.executable, str(HERE / "mountcheck.py"), str(spec_file), str(stop_file), mode],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        # every thread verifies v0 once before anything moves
        assert wait_for(lambda: all(c.passes.get("main:" + modes[i], 0) for i, c in enumerate(counters)), 120)
        t0 = time.monotonic()
        for k in range(1, NV + 1):
            store.commit(repo, tmp_path / f"v{k}", f"v{k}")
            store.tag(repo, f"t{k}")
            if k % 2 == 0:
                store.run("gc")
            time.sleep(0.3)
        writer_s = time.monotonic() - t0
        assert wait_content(m.path / repo / "main/VERSION", f"{NV}\n".encode()) is not None
        time.sleep(0.5)
    finally:
        stop.set()
        stop_file.touch()
        for t in threads:
            t.join(300)
        outs = []
        for p in procs:
            try:
                out, err = p.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            outs.append((p.returncode, out, err))
    assert not any(t.is_alive() for t in threads), "a reader thread hangs"
    total = mountcheck.Counters()
    for c in counters:
        total.add(c.as_dict())
    for rc, out, err in outs:
        assert rc == 0, err.decode(errors="replace")
        total.add(json.loads(out))
    summary = (f"{total.files} files verified; passes {total.passes}; main versions seen "
               f"{sorted(total.seen)}; ENOENT under main/: {len(total.enoent_main)} "
               f"{total.enoent_main[:5]}; writer {writer_s:.1f} s")
    print(summary)
    assert not total.mismatches, f"{len(total.mismatches)} mismatches: {total.mismatches[:10]}\n{summary}"
    assert not total.errors, f"{len(total.errors)} errors: {total.errors[:10]}\n{summary}"
    for what in ("base:snapshot", "base:path", "main:snapshot", "main:path"):
        assert total.passes.get(what, 0) >= 6, summary    # 4 threads + 2 processes, at least once
    assert {"0", str(NV)} <= total.seen, summary
    # afterwards: every tag made while readers ran is its version exactly
    c = mountcheck.Counters()
    for k in range(1, NV + 1):
        mountcheck.snapshot_pass(str(m.path / repo / f"t{k}"), spec, f"t{k}", c, fixed_version=str(k))
    mountcheck.snapshot_pass(str(m.path / repo / "main"), spec, "main", c, fixed_version=str(NV))
    assert not c.mismatches and not c.errors, (c.mismatches, c.errors)
    assert m.running()
    for k in range(NV + 1):                 # kept only when the test fails
        shutil.rmtree(tmp_path / f"v{k}")


# ---- 6. damaged chunks -------------------------------------------------------------------

def test_store_grows_while_mounted(store, mounter, tmp_path):
    """
    A commit that grows the store past the daemon's map (another process
    resizes it) while a reader keeps reading: the daemon remaps with no
    transaction open, every byte stays right, the new version reads back.
    """
    small = random.Random(21).randbytes(3 << 20)
    put(tmp_path / "v1", "a.bin", small)
    store.create("dataset", "grow")
    id1 = store.commit("datasets/grow", tmp_path / "v1", "small")
    size0 = os.path.getsize(store.store / "data.mdb")
    m = mounter(store.store)
    old = m.path / "datasets/grow/.commits" / id1 / "a.bin"
    stop = threading.Event()
    result = {"reads": 0, "bad": 0, "errors": []}

    def reader():
        while not stop.is_set():
            try:
                result["bad"] += old.read_bytes() != small
                result["reads"] += 1
            except OSError as e:
                result["errors"].append(repr(e))
                return
    t = threading.Thread(target=reader)
    t.start()
    try:
        rnd = random.Random(22)
        big = tmp_path / "v2"
        for i in range(5):      # 1.25 GiB of new bytes: past the 1 GiB initial map
            put(big, f"big{i}.bin", b"".join(rnd.randbytes(64 << 20) for _ in range(4)))
        store.commit("datasets/grow", big, "big")
    finally:
        stop.set()
        t.join()
    assert os.path.getsize(store.store / "data.mdb") > max(size0, 1 << 30)
    assert result["errors"] == [] and result["bad"] == 0 and result["reads"] > 0, result
    got = m.path / "datasets/grow/main/big4.bin"
    assert wait_for(got.exists, LIVE_WAIT)
    rnd = random.Random(22)
    for i in range(5):
        want = b"".join(rnd.randbytes(64 << 20) for _ in range(4))
        if i in (0, 4):
            assert (m.path / f"datasets/grow/main/big{i}.bin").read_bytes() == want
    assert old.read_bytes() == small


@pytest.mark.parametrize("cold,size", [(False, MiB), (True, MiB), (True, 24 * MiB)],
                         ids=["in-memory", "cold", "cold-big"])
def test_damaged_chunk_is_eio(store, mounter, tmp_path, cold, size):
    """cold: the store's pages are dropped first, so the damaged chunk is read
    past the page cache into a staging buffer (fs/stage.c), not through the map;
    cold-big: a file big enough to be read ahead of its reader, into staging
    buffers by the prefetch workers."""
    rnd = random.Random(77)
    src = tmp_path / "src"
    victim = rnd.randbytes(size)            # random: unique in the store
    good = rnd.randbytes(MiB)
    put(src, "victim.bin", victim)
    put(src, "good.bin", good)
    put(src, "small.txt", b"small and fine\n")
    store.create("dataset", "c")
    store.commit("datasets/c", src, "v")
    store.run("fsck")                       # clean before the damage

    # no daemon has the store open: damage one byte of the victim's stored chunk
    probe = size - MiB + 700_000
    needle = victim[probe:probe + 64]
    dbf = store.store / "data.mdb"
    data = dbf.read_bytes()
    hits = []
    pos = data.find(needle)
    while pos >= 0:
        hits.append(pos)
        pos = data.find(needle, pos + 1)
    assert hits, "the victim's bytes are not stored raw in data.mdb"
    with open(dbf, "r+b") as f:
        for pos in hits:                    # a stale copy in a free page would not count
            f.seek(pos + 32)
            f.write(bytes([data[pos + 32] ^ 0x5A]))
    del data
    assert store.run("fsck", rc=3).returncode == 3
    if cold:
        evict(dbf)

    m = mounter(store.store)
    v = m.path / "datasets/c/main"
    assert errno_of(lambda: (v / "victim.bin").read_bytes()) == errno.EIO
    # every read gives the right bytes or EIO (a read may stop short, with the right
    # bytes, just before the damaged chunk, as read(2) does); the damaged part fails
    fd = os.open(v / "victim.bin", os.O_RDONLY)
    try:
        eio, off = 0, 0
        while off < size:
            try:
                got = os.pread(fd, 65536, off)
            except OSError as e:
                assert e.errno == errno.EIO, e
                eio += 1
                off = (off // 65536 + 1) * 65536
                continue
            assert got, f"end of file at {off} of {size}"
            assert got == victim[off:off + len(got)], f"wrong bytes at {off}"
            off += len(got)
        assert errno_of(os.pread, fd, 4096, (probe + 32) // 4096 * 4096) == errno.EIO
        assert eio >= 1
        assert os.fstat(fd).st_size == size
    finally:
        os.close(fd)
    p = run(["cat", v / "victim.bin"], rc=1)
    assert b"Input/output error" in p.stderr
    # the rest of the store is fine, and so is the daemon
    assert (v / "good.bin").read_bytes() == good
    assert (v / "small.txt").read_bytes() == b"small and fine\n"
    assert (m.path / "datasets/c/.commits").is_dir()
    assert m.running() and is_artifs_mount(m.path)
    assert errno_of(lambda: (v / "victim.bin").read_bytes()) == errno.EIO    # still EIO
    assert wait_for(lambda: "victim.bin" in m.log_text(), 5), m.log_text()
    line = [x for x in m.log_text().splitlines() if "victim.bin" in x][0]
    assert "error" in line, line
    # a reader retrying in a loop does not flood the log
    before = sum("victim.bin" in x for x in m.log_text().splitlines())
    fd = os.open(v / "victim.bin", os.O_RDONLY)
    try:
        for _ in range(300):
            assert errno_of(os.pread, fd, 4096, (probe + 32) // 4096 * 4096) == errno.EIO
    finally:
        os.close(fd)
    after = sum("victim.bin" in x for x in m.log_text().splitlines())
    assert after - before <= 2, (before, after)
    if cold:
        assert not unmount_and_reap(m)
        n = staged_chunks(m.log_text())
        # good.bin at least, unless this file system cannot read past the page cache;
        # a big file's chunks are staged ahead of its reader (about 190 of them here)
        assert n or "no O_DIRECT" in m.log_text(), m.log_text()[-2000:]
        if size > 8 * MiB and "no O_DIRECT" not in m.log_text():
            assert n >= 100, (n, m.log_text()[-2000:])


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError(f"no RssAnon for {pid}")


def test_cold_reads_are_staged(store, mounter, tmp_path):
    """
    Cold small files are read past the page cache into staging buffers, ahead of
    the readers (fs/stage.c).  Many readers at once (threads and processes, in
    and out of order), while new versions are committed and gc runs, get
    exactly the committed bytes, and the daemon says it served them from the
    buffers.
    """
    rnd = random.Random(5)
    src = tmp_path / "src"
    want = {}
    for i in range(1200):
        size = rnd.choice([0, 1, 100, 3000, 5000, 40_000, 100_000, 300_000, 700_000])
        rel = f"d{i % 12:02d}/f{i:05d}.bin"
        data = rnd.randbytes(size)
        put(src, rel, data)
        want[rel] = data
    # the same bytes under two names, and a file bigger than a staging buffer
    put(src, "d00/dup.bin", want["d00/f00012.bin"])
    want["d00/dup.bin"] = want["d00/f00012.bin"]
    want["big/big.bin"] = rnd.randbytes(3 * MiB + 123)
    put(src, "big/big.bin", want["big/big.bin"])
    # and one big enough to be staged ahead of its readers (read-ahead), with a
    # repeated block so that some of its chunks lie elsewhere in the store
    block = rnd.randbytes(2 * MiB)
    want["big/huge.bin"] = rnd.randbytes(17 * MiB) + block + rnd.randbytes(9 * MiB) + block + b"end"
    put(src, "big/huge.bin", want["big/huge.bin"])
    store.create("dataset", "cold")
    cid = store.commit("datasets/cold", src, "v")
    evict(store.store / "data.mdb")
    m = mounter(store.store)
    root = m.path / "datasets/cold/.commits" / cid     # main moves while they read
    names = sorted(want)
    errors = []

    def writer():
        # new versions and gc while the readers run: pages are written and freed
        # under the staging buffers; the version being read is pinned
        try:
            for k in range(3):
                for i in range(40):
                    put(src, f"w/f{i:03d}.bin", rnd.randbytes(200_000))
                store.commit("datasets/cold", src, f"w{k}")
                store.run("gc")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"writer: {e}")

    def reader(part):
        try:
            for rel in part:
                got = (root / rel).read_bytes()
                if got != want[rel]:
                    errors.append(f"{rel}: wrong bytes ({len(got)} read, {len(want[rel])} committed)")
        except OSError as e:
            errors.append(f"{e.filename}: {e}")

    parts = [names[k::3] for k in range(3)] + [list(reversed(names))]
    threads = [threading.Thread(target=reader, args=(p,)) for p in parts]
    procs = [subprocess.Popen(["cat"] + [str(root / rel) for rel in names[k::2]],
                              stdout=subprocess.PIPE) for k in range(2)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for t in threads:
        t.join(300)
    assert not errors, errors[:10]
    for k, out in enumerate(outs):
        assert procs[k].returncode == 0
        assert out == b"".join(want[rel] for rel in names[k::2])
    # the buffers' memory goes back once they have been idle a while (10 s)
    busy = rss_anon_kib(m.proc.pid)
    assert wait_for(lambda: rss_anon_kib(m.proc.pid) < busy - 16 * 1024, 30), \
        (busy, rss_anon_kib(m.proc.pid))
    print(f"daemon anonymous memory: {busy // 1024} MiB after the reads, "
          f"{rss_anon_kib(m.proc.pid) // 1024} MiB once idle")
    assert not unmount_and_reap(m)
    log = m.log_text()
    n = staged_chunks(log)
    if "no O_DIRECT" in log:
        print("this file system has no O_DIRECT: the page-cache path was checked instead")
        assert not n
    else:
        assert n is not None and n >= 500, log[-2000:]
        print(f"{n} chunks served from staging buffers")



def test_read_only_store(store, mounter, artifs_bin, env, tmp_path):
    """
    A store on a read-only file system (shipped as an image, a read-only
    export, a snapshot): the commands that read it and the mount work, the
    others say why they cannot.  squashfs has no O_DIRECT, so the mount reads
    cold chunks through the page cache instead of its staging buffers
    (fs/stage.c's fallback), and there is nothing to pin against gc.
    """
    rnd = random.Random(11)
    src = tmp_path / "src"
    want = {}
    for i in range(300):
        rel = f"d{i % 6}/f{i:04d}.bin"
        want[rel] = rnd.randbytes(rnd.choice([0, 1, 5000, 100_000, 700_000]))
        put(src, rel, want[rel])
    want["big.bin"] = rnd.randbytes(9 * MiB + 7)
    put(src, "big.bin", want["big.bin"])
    store.create("dataset", "ro")
    c1 = store.commit("datasets/ro", src, "v1")
    store.tag("datasets/ro", "v1", c1)
    put(src, "d0/f0000.bin", b"changed")
    c2 = store.commit("datasets/ro", src, "v2")
    image = tmp_path / "store.sqfs"
    run(["mksquashfs", str(store.store), str(image), "-noappend", "-quiet", "-no-progress"])
    ro = tmp_path / "ro"
    ro.mkdir()
    run(["mount", "-t", "squashfs", "-o", "loop,ro", str(image), str(ro)])
    m = None
    try:
        r = Artifs(artifs_bin, ro, env)
        for args in (["repos"], ["log", "datasets/ro"], ["ls", "-l", "datasets/ro@v1:d0"],
                     ["diff", "datasets/ro@v1", "datasets/ro"], ["show", "datasets/ro@v1"],
                     ["du"], ["envs", "datasets/ro"], ["branch", "datasets/ro", "--list"]):
            assert r.run(*args).stdout == store.run(*args).stdout, args
        assert r.run("cat", "datasets/ro@v1:big.bin").stdout == want["big.bin"]
        r.run("fsck")
        r.run("checkout", "datasets/ro@v1", str(tmp_path / "co"))
        for rel, data in want.items():
            assert (tmp_path / "co" / rel).read_bytes() == data, rel
        err = r.fail("tag", "datasets/ro", "v2", c2)
        assert "read-only file system" in err, err
        r.fail("gc")
        r.fail("commit", "datasets/ro", str(src), "-m", "v3")

        evict(ro / "data.mdb")
        m = mounter(ro)
        root = m.path / "datasets/ro"
        for rel, data in want.items():
            assert (root / "v1" / rel).read_bytes() == data, rel
        assert (root / "main/d0/f0000.bin").read_bytes() == b"changed"
        assert (root / ".commits" / c2 / "big.bin").read_bytes() == want["big.bin"]
        assert not unmount_and_reap(m)
        log = m.log_text()
        assert "no O_DIRECT" in log, log[-2000:]
        assert "read-only store" in log and "not pinned" not in log, log[-2000:]
        assert not staged_chunks(log), log[-2000:]
    finally:
        if m is not None and is_artifs_mount(m.path):
            unmount_and_reap(m)
        subprocess.run(["umount", "-l", str(ro)], capture_output=True, timeout=60)


def test_repeated_chunks_are_read_once(store, mounter, tmp_path):
    """
    A big file that repeats itself (zeros, a copied tensor) is read ahead with
    each repeated chunk asked for once; after its first use it is served from
    the page cache.  Staged each time instead, the reader read most repeats
    itself, one at a time (hundreds of "cold chunk fetches" for this file).
    """
    rnd = random.Random(11)
    block = rnd.randbytes(MiB)
    data = block * 100 + bytes(8 * MiB) + rnd.randbytes(3 * MiB)
    src = tmp_path / "src"
    put(src, "rep.bin", data)
    store.create("dataset", "rep")
    store.commit("datasets/rep", src, "v")
    evict(store.store / "data.mdb")
    m = mounter(store.store)
    with open(m.path / "datasets/rep/main/rep.bin", "rb") as f:
        got = f.read()
    assert got == data
    assert not unmount_and_reap(m)
    log = m.log_text()
    found = re.findall(r"(\d+) cold chunk fetches", log)
    assert found, log[-2000:]
    n = int(found[-1])
    print(f"{n} chunks the reader fetched itself")
    # the file holds about 850 chunk uses of about 30 distinct chunks (the build
    # before: about 300 fetched by the reader; this one: under 20)
    assert n < 60, log[-2000:]

def test_big_files_forgotten_while_read_ahead(store, mounter, tmp_path):
    """
    The read-ahead of a big file runs after the reply to the read; by then
    the reader may have closed the file and the kernel forgotten its inode.
    Readers open, read and close big files over and over while the kernel
    drops its unused inodes (FORGETs); the daemon must stay up and every
    byte right.  A build that used the node after the reply without holding
    it read freed memory here (caught by AddressSanitizer in the ASan run).
    """
    rnd = random.Random(12)
    src = tmp_path / "src"
    files = {}
    for i in range(4):
        files[f"big{i}.bin"] = rnd.randbytes(40 * MiB + i * 4096)
        put(src, f"big{i}.bin", files[f"big{i}.bin"])
    store.create("dataset", "fgt")
    store.commit("datasets/fgt", src, "v")
    m = mounter(store.store)
    root = m.path / "datasets/fgt/main"
    stop = threading.Event()
    errors = []

    def dropper():
        # pages too: a cold store makes each read-ahead round slow (B-tree
        # pages read one fault at a time), which keeps the window open
        while not stop.is_set():
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            time.sleep(0.001)

    def reader(k):
        try:
            for n in range(60):
                name = f"big{(n + k) % 4}.bin"
                with open(root / name, "rb") as f:
                    head = f.read(MiB)
                if head != files[name][:MiB]:
                    errors.append(f"{name}: wrong bytes")
                    return
        except OSError as e:
            errors.append(f"reader {k}: {e}")

    d = threading.Thread(target=dropper)
    d.start()
    readers = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    try:
        for t in readers:
            t.start()
        for t in readers:
            t.join()
    finally:
        stop.set()
        d.join()
    assert not errors, errors
    for name, data in files.items():
        assert (root / name).read_bytes() == data
    assert m.running(), "the daemon died"


# ---- 7. errors and stopping -------------------------------------------------------------------

@pytest.fixture(params=["daemon", "foreground"])
def either_mounted(request, store, mounter):
    """The test's store mounted detached (as users run it), or --foreground."""
    return mounter(store.store, daemon=request.param == "daemon")


@pytest.fixture
def daemon_mounted(store, mounter):
    return mounter(store.store, daemon=True)


def test_mount_twice_fails(store, daemon_mounted, artifs_bin, env):
    mounted = daemon_mounted
    err = store.fail("mount", mounted.path)
    assert "already" in err and str(mounted.path) in err, err
    # the same directory spelt otherwise
    err = store.fail("mount", str(mounted.path) + "/.", "--log", mounted.path.parent / "x.log")
    assert "already" in err, err
    assert daemon_pids(str(mounted.path)) == [mounted.pid]
    assert os.listdir(mounted.path) == ["datasets", "models"]


def test_killed_daemon_leaves_a_clear_error(store, daemon_mounted):
    """A daemon killed with SIGKILL leaves a dead mount: mounting there again
    says so and how to clear it; artifs umount clears it; a new mount serves."""
    mounted = daemon_mounted
    os.kill(mounted.pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_running(mounted.pid), 10)
    assert errno_of(os.listdir, mounted.path) in (errno.ENOTCONN, errno.ECONNABORTED)
    err = store.fail("mount", mounted.path)
    assert "daemon is gone" in err and "umount" in err, err
    store.run("umount", mounted.path)
    assert not is_artifs_mount(mounted.path)
    store.run("mount", mounted.path, "--log", mounted.path.parent / "again.log")
    assert wait_for(lambda: is_artifs_mount(mounted.path), 10)
    assert sorted(os.listdir(mounted.path)) == ["datasets", "models"]


def test_mount_errors(store, mounter, artifs_bin, env, tmp_path):
    missing = tmp_path / "no-such-dir"
    err = store.fail("mount", missing)
    assert str(missing) in err, err
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = store.fail("mount", afile)
    assert "not a directory" in err, err
    mp = tmp_path / "mp"
    mp.mkdir()
    mounter.mounts.append(Mount(mp, store.store, None, env))    # cleaned up if one wrongly mounts
    nostore = tmp_path / "no-store"
    err = Artifs(artifs_bin, nostore, env).fail("mount", mp)
    assert str(nostore) in err, err
    assert not nostore.exists(), "mount created a store"
    err = store.fail("mount", mp, "-o", "no_such_fuse_option_xyz")
    assert "FUSE" in err or "option" in err, err
    for m in (missing, mp, afile):
        assert not is_artifs_mount(m)
    assert not daemon_pids(str(tmp_path))
    # umount of what is not an artifs mount
    err = store.fail("umount", mp)
    assert "not an artifs mount" in err, err
    store.fail("umount", missing)
    store.run("umount", rc=2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_unmounts(store, either_mounted, sig):
    mounted = either_mounted
    assert mounted.running()
    os.kill(mounted.pid, sig)
    assert wait_for(lambda: not is_artifs_mount(mounted.path), 10), "still mounted"
    assert mounted.wait_exit(), "daemon still running"
    log = mounted.log_text()
    assert "unmounted" in log, log
    assert ": error: " not in log, f"a signal is a normal stop, but the log says:\n{log}"
    assert os.listdir(mounted.path) == []


@pytest.mark.parametrize("how", ["fusermount3", "artifs umount"])
def test_unmount_stops_daemon(store, either_mounted, how):
    mounted = either_mounted
    if how == "fusermount3":
        run(["fusermount3", "-u", mounted.path])
    else:
        store.run("umount", mounted.path)
    assert not is_artifs_mount(mounted.path)
    assert mounted.wait_exit(), "daemon still running after the unmount"
    log = mounted.log_text()
    assert "unmounted" in log and ": error: " not in log, log


def test_umount_busy(store, daemon_mounted, tmp_path):
    mounted = daemon_mounted
    put(tmp_path / "s", "f", b"x")
    store.create("dataset", "b")
    store.commit("datasets/b", tmp_path / "s", "v")
    f = open(mounted.path / "datasets/b/main/f", "rb")
    try:
        err = store.fail("umount", mounted.path)
        assert "busy" in err, err
        assert is_artifs_mount(mounted.path) and mounted.running()
        assert f.read() == b"x"
    finally:
        f.close()
    store.run("umount", mounted.path)
    assert mounted.wait_exit()


def test_foreground(store, mounter, tmp_path):
    put(tmp_path / "s", "f", b"foreground\n")
    store.create("dataset", "fg")
    store.commit("datasets/fg", tmp_path / "s", "v")
    m = mounter(store.store, log=False)
    assert (m.path / "datasets/fg/main/f").read_bytes() == b"foreground\n"
    assert m.proc.poll() is None
    m.proc.send_signal(signal.SIGTERM)
    rc = m.proc.wait(10)
    assert not is_artifs_mount(m.path)
    err = m.stderr.read_text(errors="replace")
    assert "serving store" in err and "unmounted" in err, err
    # SIGTERM is the documented way to stop: exit status 0, no error
    assert rc == 0 and "error" not in err, f"exit {rc}:\n{err}"


# ---- 8. the mount(8) helper --------------------------------------------------------------------

@pytest.mark.parametrize("opts", [["-o", "ro,allow_other,_netdev"], ["-n", "-o", "defaults,nofail", "-v"],
                                  ["-oro,x-systemd.automount,noauto"]])
def test_mount_helper(store, mounter, mount_helper, artifs_bin, env, tmp_path, opts):
    src = tmp_path / "src"
    put(src, "data/x.bin", random.Random(8).randbytes(300000))
    put(src, "run", b"#!/bin/sh\n", 0o755)
    store.create("dataset", "h")
    store.commit("datasets/h", src, "v")
    mp = tmp_path / "helper-mnt"
    mp.mkdir()
    m = Mount(mp, store.store, None, env)
    mounter.mounts.append(m)                # torn down like every other mount
    run(["sh", mount_helper, store.store, mp] + opts, env=dict(env, ARTIFS_BIN=str(artifs_bin)))
    assert wait_for(lambda: is_artifs_mount(mp), 10)
    assert m.find_pid()
    e = mount_entry(mp)
    assert e[1] == "fuse.artifs" and e[2] == os.path.realpath(store.store), e
    assert "ro" in e[3].split(","), e
    assert "allow_other" in e[4].split(","), e
    diff_r(src, mp / "datasets/h/main")
    assert stat.S_IMODE(os.stat(mp / "datasets/h/main/run").st_mode) == 0o555


def test_mount_fuse3_form(store, mounter, artifs_bin, env, tmp_path):
    """
    "mount -t fuse.artifs STORE MP" without a helper of our own: Debian's
    mount.fuse3 runs "artifs STORE MP -o OPTIONS" (options of mount(8)
    included), which must mount like "artifs --store STORE mount MP".
    """
    src = tmp_path / "src"
    put(src, "a/b.txt", b"fuse3 form\n")
    store.create("dataset", "f3")
    store.commit("datasets/f3", src, "v")
    mp = tmp_path / "f3-mnt"
    mp.mkdir()
    m = Mount(mp, store.store, None, env)
    mounter.mounts.append(m)
    run([artifs_bin, store.store, mp, "-o", "rw,dev,suid,_netdev,allow_other"], env=env)
    assert wait_for(lambda: is_artifs_mount(mp), 10)
    assert m.find_pid()
    e = mount_entry(mp)
    assert e[1] == "fuse.artifs" and "ro" in e[3].split(","), e
    diff_r(src, mp / "datasets/f3/main")
    # not a store: no mount, the usual unknown-command error
    p = run([artifs_bin, str(tmp_path), str(mp)], env=env, rc=1)
    assert b"artifs: error:" in p.stderr


def test_mount_helper_usage(mount_helper):
    p = run(["sh", mount_helper], rc=2)
    assert b"usage" in p.stderr


# ---- 9. statfs and listings ------------------------------------------------------------------------

def test_statfs(big, big_mount):
    st = os.statvfs(big_mount.path)
    assert st.f_bsize == 4096 and st.f_frsize == 4096
    assert st.f_namemax == 255
    assert 0 < st.f_bfree <= st.f_blocks and st.f_bavail <= st.f_blocks
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert 64 * MiB <= used <= os.path.getsize(big.store / "data.mdb"), used
    under = os.statvfs(big.store)
    free_under = under.f_bavail * under.f_frsize
    assert abs(st.f_bavail * st.f_frsize - free_under) <= max(free_under // 20, 256 * MiB)
    p = run(["df", "-P", big_mount.path])
    last = p.stdout.decode().splitlines()[-1].split()
    assert last[0] == os.path.realpath(big.store) and last[-1] == str(big_mount.path), last
    assert int(last[1]) > 0 and int(last[2]) >= 64 * 1024
    run(["df", "-i", big_mount.path])
    run(["stat", "-f", big_mount.path])


C_ESCAPES = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, '"': 34, "?": 63}


def c_unquote(s):
    """The bytes of ls's --quoting-style=c name at the start of s."""
    assert s[0] == '"', s
    out, i = bytearray(), 1
    while s[i] != '"':
        if s[i] == "\\":
            if s[i + 1] in "01234567":
                out.append(int(s[i + 1:i + 4], 8))
                i += 4
            else:
                out.append(C_ESCAPES[s[i + 1]])
                i += 2
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


def ls_la(d):
    """`ls -la` rows: (mode string, size, mtime, name as bytes); C locale, sorted by ls."""
    out = run(["ls", "-la", "--time-style=+%s", "--quoting-style=c", d],
              env=dict(os.environ, LC_ALL="C")).stdout.decode()
    rows = []
    for line in out.splitlines()[1:]:       # skip "total N"
        f = line.split(None, 6)
        rows.append((f[0], int(f[4]), int(f[5]), c_unquote(f[6])))
    return rows


def names(rows):
    return [r[3].decode() for r in rows]


@pytest.mark.parametrize("ref", ["main", "v1"])
def test_listings(big, big_mount, ref):
    M = big_mount.path
    raw = lambda d: os.listdir(os.fsencode(d))      # noqa: E731 - readdir order as served
    assert raw(M) == [b"datasets", b"models"]
    assert names(ls_la(M)) == [".", "..", "datasets", "models"]
    assert names(ls_la(M / "datasets")) == [".", "..", "big", "unborn"]
    assert names(ls_la(M / "models")) == [".", "..", "tiny"]
    rows = ls_la(M / big.repo)
    assert names(rows) == [".", "..", ".commits", "dev", "main", "v1", "v2"]
    assert all(r[0] == "dr-xr-xr-x" for r in rows), rows
    for name, (src, t, cid) in big.refs.items():
        assert next(r for r in rows if r[3] == name.encode())[2] == t
    assert raw(M / big.repo) == sorted(raw(M / big.repo))
    assert names(ls_la(M / "datasets/unborn")) == [".", "..", ".commits", "main"]
    assert names(ls_la(M / "datasets/unborn/main")) == [".", ".."]
    # version directories: complete, sorted bytewise as served, modes and times
    # (one version per mount: see test_mtime_is_the_viewed_commits_time)
    for ref in (ref,):
        src, t, cid = big.refs[ref]
        for sub in ("", "many", "links", "bin", "long", "unicodé"):
            d, s = M / big.repo / ref / sub, src / sub
            got = raw(d)
            assert got == sorted(got), f"{ref}/{sub} not served in byte order"
            assert sorted(got) == sorted(raw(s))
            rows, srows = ls_la(d), ls_la(s)
            assert [r[3] for r in rows] == [r[3] for r in srows] and len(rows) == len(got) + 2
            for r, sr in zip(rows[2:], srows[2:]):
                assert r[2] == t, r
                kind = sr[0][0]
                assert r[0][0] == kind, (r, sr)
                if kind == "-":
                    assert r[0] == ("-r-xr-xr-x" if "x" in sr[0] else "-r--r--r--"), (r, sr)
                    assert r[1] == sr[1], (r, sr)
                elif kind == "d":
                    assert r[0] == "dr-xr-xr-x", r
                else:
                    assert r[0] == "lrwxrwxrwx" and r[1] == sr[1], (r, sr)
    assert len(raw(M / big.repo / ref / "many")) == 2000


def test_mtime_of_shared_files(big, big_mount):
    """
    A file unchanged between versions is one node (shared by content, so one
    page cache), and a node has one set of times: those of the first version
    the mount met it in.  So every version's directories carry exactly their
    own commit time, and an unchanged file carries the commit time of some
    version that holds those very bytes (here v1, met first).  A file that
    changed carries its own version's time.
    """
    assert big.t2 > big.t1
    times = {ref: big.refs[ref][1] for ref in ("v1", "v2", "main", "dev")}
    unchanged = ["empty.txt", "medium/zeros-3mib", "many/f1999"]
    for ref in ("v1", "main", "dev", "v2"):
        st = os.lstat(big_mount.path / big.repo / ref)
        assert int(st.st_mtime) == times[ref], (ref, int(st.st_mtime), times[ref])
        for d in ("medium", "nested", "many"):
            st = os.lstat(big_mount.path / big.repo / ref / d)
            assert int(st.st_mtime) == times[ref], (ref, d)
    first = {}
    for ref in ("v1", "main", "dev", "v2", "v1"):
        for rel in unchanged:
            st = os.lstat(big_mount.path / big.repo / ref / rel)
            # stable: the same node shows the same time through every version
            assert first.setdefault(rel, int(st.st_mtime)) == int(st.st_mtime), (ref, rel)
    for rel, t in first.items():
        assert t == times["v1"], (rel, t, times)
