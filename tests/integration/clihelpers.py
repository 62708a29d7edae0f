"""Helpers for the artifs CLI integration tests: a runner, seeded data, tree comparison.

(A module of its own, not conftest.py, so that test files can import it by a
name no other test directory uses.)
"""

import hashlib
import json
import os
import random
import stat
import subprocess
import time
from pathlib import Path

MiB = 1 << 20

HERE = Path(__file__).resolve().parent


def find_binary():
    env = os.environ.get("ARTIFS_BIN")
    if env:
        return Path(env)
    # convenience when pytest is run by hand from a source checkout
    guess = HERE.parent.parent / "build" / "cli" / "artifs"
    return guess if guess.exists() else None


def base_env(tmp_path):
    """An environment that cannot reach a real store: HOME and XDG point into tmp_path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ARTIFS_") and k not in ("XDG_DATA_HOME",)}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    env["ARTIFS_AUTHOR"] = "tester <t@example.org>"
    env["LC_ALL"] = "C.UTF-8"
    return env


class Artifs:
    """Runs the CLI against one store; every result is a CompletedProcess with bytes."""

    def __init__(self, binary, store, env):
        self.bin = str(binary)
        self.store = Path(store)
        self.env = env

    def run(self, *args, rc=0, store=True, env=None, input=None, timeout=600):
        """Run `artifs [--store S] ARGS`; assert the exit status when rc is not None."""
        cmd = [self.bin]
        if store:
            cmd += ["--store", str(self.store)]
        cmd += [os.fsencode(a) if isinstance(a, bytes) else str(a) for a in args]
        p = subprocess.run(cmd, env=env if env is not None else self.env, input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if rc is not None:
            assert p.returncode == rc, (
                f"artifs {' '.join(map(str, args))}: exit {p.returncode}, wanted {rc}\n"
                f"stdout: {p.stdout[:2000]!r}\nstderr: {p.stderr[:4000]!r}")
        assert_no_sanitizer_report(p.stderr)
        return p

    def fail(self, *args, rc=1, **kw):
        """Run a command that must fail; check the documented error format."""
        p = self.run(*args, rc=rc, **kw)
        err = p.stderr.decode("utf-8", "replace")
        assert "artifs: error: " in err, f"no 'artifs: error:' line in {err!r}"
        return p

    def json(self, *args, rc=0):
        p = self.run(*args, "--json", rc=rc)
        return json.loads(p.stdout)

    def text(self, *args, **kw):
        return self.run(*args, **kw).stdout.decode()

    def init(self):
        self.run("init")
        return self

    def create(self, repo):
        kind, name = repo.split("/", 1)
        self.run("create", kind.rstrip("s"), name)

    def commit(self, spec, path, msg="commit", *extra, rc=0):
        p = self.run("commit", spec, str(path), "-m", msg, *extra, rc=rc)
        if rc == 0:
            out = p.stdout.decode().strip()
            assert is_oid(out), f"commit printed {out!r}"
            return out
        return p

    def head(self, repo, ref="main"):
        return self.json("log", f"{repo}@{ref}", "-n", "1")[0]["id"]

    def du(self, repo=None):
        return self.json("du", *([repo] if repo else []))

    def cat(self, spec, rc=0):
        return self.run("cat", spec, rc=rc).stdout


# What an ASan / LSan / UBSan report contains.
SANITIZER_MARKERS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer",
                     b"runtime error:", b"SUMMARY: UndefinedBehaviorSanitizer",
                     b"ERROR: UndefinedBehaviorSanitizer")


def assert_no_sanitizer_report(stderr):
    assert not any(m in stderr for m in SANITIZER_MARKERS), \
        f"sanitizer report:\n{stderr[:8000].decode('utf-8', 'replace')}"


def is_oid(s):
    return len(s) == 32 and all(c in "0123456789abcdef" for c in s)


# ---------------------------------------------------------------------------
# Data generators (seeded)


def rand_bytes(seed, size):
    return random.Random(seed).randbytes(size)


def write_random(path, seed, size, block=MiB):
    """Write `size` seeded pseudo-random bytes in 1 MiB blocks; return the sha256 hex."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    r = random.Random(seed)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = r.randbytes(min(block, left))
            f.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def make_small_tree(root, seed, ndirs, per_dir, max_size=4096):
    """ndirs directories of per_dir files of 0..max_size random bytes."""
    r = random.Random(seed)
    root = Path(root)
    for d in range(ndirs):
        dd = root / f"d{d:03d}"
        dd.mkdir(parents=True)
        for i in range(per_dir):
            (dd / f"f{i:05d}.bin").write_bytes(r.randbytes(r.randrange(max_size + 1)))
    return root


def set_old_mtime(root, age=10):
    """Move every mtime back (ctime still says now: see the racy-clean rule)."""
    t = time.time() - age
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)


# ---------------------------------------------------------------------------
# Comparisons


def tree_listing(root):
    """{relative path (bytes): (kind, exec, link target or None)} for everything below root."""
    root = os.fsencode(str(root))
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", False, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", False, None)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", bool(st.st_mode & 0o111), None)
            else:
                out[rel] = ("other", False, None)
    return out


def files_equal(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(4 * MiB)
            y = fb.read(4 * MiB)
            if x != y:
                return False
            if not x:
                return True


def assert_same_tree(src, dst, skip=()):
    """Same entries, kinds, executable bits, link targets and bytes; then diff -r agrees."""
    a = {k: v for k, v in tree_listing(src).items() if k not in skip}
    b = tree_listing(dst)
    assert sorted(a) == sorted(b), (
        f"only in source: {sorted(set(a) - set(b))[:10]}, only in copy: {sorted(set(b) - set(a))[:10]}")
    for rel, (kind, ex, target) in a.items():
        assert b[rel] == (kind, ex, target), f"{rel!r}: {b[rel]} != {(kind, ex, target)}"
        if kind == "file":
            assert files_equal(os.path.join(os.fsencode(str(src)), rel),
                               os.path.join(os.fsencode(str(dst)), rel)), f"{rel!r} differs"
    if not skip:
        p = subprocess.run(["diff", "-r", "--no-dereference", str(src), str(dst)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode == 0, f"diff -r: {p.stdout[:2000]!r} {p.stderr[:2000]!r}"
