#!/usr/bin/env python3
"""A bounded concurrency soak of the artifs FUSE mount.

    python3 tests/soak/soak.py --duration 300          # needs /dev/fuse + fusermount3 (root)
    python3 tests/soak/soak.py --duration 30 --artifs /tmp/sbuild/cli/artifs --readers 4

One store is mounted (`artifs mount --foreground`, under Popen).  While the
soak runs:

* READERS (separate processes, default 4) loop over versions through the
  mount: the branch `main`, tag dirs, `.commits/ID` and `.commits/PREFIX`
  dirs, environment dirs (`staging`, `production`) and `.labels` views (of
  fixed commits and of `main`).  Every file found is read (whole reads,
  small reads, random preads or mmap) and every byte is checked against the
  content that was committed: file contents come from a finite, seeded set
  of variants per path, so the expected sha256 (and the bytes themselves) are
  known in advance.
    - fixed versions (tags, commits): the listing must be exactly the
      committed tree, each file exactly its committed variant, label views
      and `.labels.jsonl` exactly the committed labels, xattrs too; any error
      (even ENOENT) is a failure.
    - moving versions (branch, environments, their label views): a path may
      vanish between listing and open (ENOENT is counted as expected), but a
      file that opens must read as one whole variant of its path: bytes of
      no variant are "wrong bytes".  Any other errno (EIO, ENOTCONN, ESTALE,
      ...) is a failure.
* the CLI (this process) loops over: commit new versions (variants change,
  files and directories appear and vanish), `label set` / `label rm`, `tag`,
  `promote` and `rollback` of environments, `gc` (and `gc --dry-run`), and
  commits and relabels refused by a pre-commit hook (they leave unreachable
  chunks and trees for `gc` to delete while the mount serves).  Each
  committed version is appended to a registry the readers follow; the
  labels the CLI reports (`label show --json`) are checked against the
  soak's own model after every change.
* a sampler records the daemon's VmRSS (and RssAnon, RssFile: the store's
  mapped pages count in VmRSS), its node count (statfs f_files), threads
  and open fds every 2 s.

Pass: zero wrong bytes, zero unexpected errors, no reader stalled (a read
blocked for 120 s), the daemon alive and mounted at the end, exiting 0 on
unmount, RSS growth after warm-up within --rss-bound-mib (default 100),
and `artifs fsck` clean afterwards.  The mount is always unmounted
(fusermount3 -u, then -uz) and the daemon reaped, whatever happens.

Exit status 0 pass, 1 fail, 2 setup problem.  A JSON summary is printed last
(and written to --json-out).
"""

import argparse
import collections
import errno
import hashlib
import json
import mmap
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

KiB, MiB = 1 << 10, 1 << 20
REPO = "datasets/soak"
HERE = Path(__file__).resolve().parent
SRC_ROOT = HERE.parent.parent
ENVS = ("staging", "production")
STALL = 120.0           # seconds without progress before a reader counts as stalled
MAX_RECORDED = 40       # problems kept per kind and reader
SANITIZER_MARKERS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:",
                     b"SUMMARY: UndefinedBehaviorSanitizer")

# ---- the content universe ---------------------------------------------------------
# path -> (kind, base size, optional).  Optional paths appear and vanish between
# versions (so whole directories do too).  Every path has a few variants.

LABEL_VALUES = {"split": ("train", "val", "test"), "class": ("cat", "dog", "bird", "none"),
                "reviewed": ("yes", "no"), "q": ("1", "2", "3", "4", "5")}


def build_universe():
    r = random.Random(7)
    u = {"README.txt": ("small", 200, False)}
    for cls in ("cat", "dog", "bird"):
        for i in range(6):
            u[f"train/{cls}/{i:03d}.bin"] = ("small", r.randrange(1, 64 * KiB), False)
        for i in range(2):
            u[f"val/{cls}/{i:03d}.bin"] = ("small", r.randrange(1, 200 * KiB), True)
    u["test/misc/empty"] = ("small", 0, True)
    u["test/misc/4097.bin"] = ("small", 4097, True)
    u["test/misc/600k.bin"] = ("small", 600 * KiB, True)
    u["models/weights.bin"] = ("big", 3 * MiB, False)
    u["models/optimizer.bin"] = ("big", 1536 * KiB + 17, True)
    u["deep/a/b/c/d/e/leaf.txt"] = ("small", 50, True)
    u["shared/dup1.bin"] = ("dup", 300 * KiB, False)
    u["shared/dup2.bin"] = ("dup", 300 * KiB, False)
    return u


UNIVERSE = build_universe()


def nvariants(path):
    return 4 if UNIVERSE[path][0] == "big" else 3


def gen(path, v):
    """The bytes of variant v of path (deterministic)."""
    kind, size, _ = UNIVERSE[path]
    if kind == "small":
        return random.Random(f"{path}#{v}").randbytes(size + 13 * v)
    if kind == "dup":       # dup1 and dup2 share contents (same inode in the mount)
        return random.Random(f"dup#{v}").randbytes(size)
    base = bytearray(random.Random(path).randbytes(size))
    if v in (1, 2):         # 64 KiB changed in place: most chunks shared with v0
        off = size // 4 * v
        base[off:off + 64 * KiB] = random.Random(f"{path}#{v}").randbytes(64 * KiB)
    elif v == 3:            # a tail appended
        base += random.Random(f"{path}#{v}").randbytes(10007)
    return bytes(base)


def variant_table():
    """path -> [(size, sha256 hex)] per variant."""
    t = {}
    for p in UNIVERSE:
        t[p] = []
        for v in range(nvariants(p)):
            b = gen(p, v)
            t[p].append((len(b), hashlib.sha256(b).hexdigest()))
    return t


VARIANTS = None         # filled in main() before the readers fork


def dirs_of(files):
    out = set()
    for p in files:
        parts = p.split("/")
        for i in range(1, len(parts)):
            out.add("/".join(parts[:i]))
    return out


def tree_order(paths):
    """Depth first, entries by name (bytewise): the order of .labels.jsonl."""
    return sorted(paths, key=lambda p: [c.encode() for c in p.split("/")])


# ---- registry: what the CLI committed, for the readers ------------------------------

class Registry:
    """Append-only JSON lines: commits (files, labels) and tags.  Readers follow it."""

    def __init__(self, path):
        self.path = Path(path)
        self.off = 0
        self.commits = {}       # id -> {"files": {path: v}, "labels": {path: {k: v}}, "seq": n}
        self.order = []         # ids in commit order
        self.tags = {}          # name -> id
        self.buf = b""

    def append(self, rec):
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        self._take(rec)

    def _take(self, rec):
        if rec["type"] == "commit":
            if rec["id"] not in self.commits:
                self.order.append(rec["id"])
            self.commits[rec["id"]] = rec
        elif rec["type"] == "tag":
            self.tags[rec["name"]] = rec["id"]

    def refresh(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except FileNotFoundError:
            return
        self.off += len(data)
        data = self.buf + data
        lines = data.split(b"\n")
        self.buf = lines.pop()      # an incomplete last line waits for the next refresh
        for ln in lines:
            if ln:
                self._take(json.loads(ln))


# ---- readers ------------------------------------------------------------------------

class Unexpected(Exception):
    pass


class Reader:
    def __init__(self, idx, mnt, reg_path, seed, heartbeat, stop):
        self.idx = idx
        self.mnt = Path(mnt)
        self.repo_dir = self.mnt / REPO
        self.reg = Registry(reg_path)
        self.rnd = random.Random(seed)
        self.hb = heartbeat
        self.stop = stop
        self.c = collections.Counter()
        self.problems = collections.defaultdict(list)

    # -- bookkeeping
    def beat(self):
        self.hb[self.idx] = time.time()

    def problem(self, kind, **detail):
        self.c["problem:" + kind] += 1
        if len(self.problems[kind]) < MAX_RECORDED:
            detail["reader"] = self.idx
            detail["t"] = round(time.time(), 3)
            self.problems[kind].append(detail)
        if kind == "error" and detail.get("errno") in (errno.ENOTCONN, errno.ECONNABORTED):
            raise Unexpected("mount gone (ENOTCONN)")

    def oserror(self, e, op, path, moving, target):
        """Classify an OSError: ENOENT on a moving version is expected, the rest are not."""
        if moving and e.errno == errno.ENOENT:
            self.c["enoent_expected"] += 1
            self.c[f"enoent_expected:{op}"] += 1
            return
        self.problem("error", errno=e.errno, errname=errno.errorcode.get(e.errno, "?"), op=op,
                     path=str(path), moving=moving, target=target)

    # -- verifying one file
    def check_file(self, fpath, rel, want_v, moving, target):
        """Read fpath; want_v is the variant (fixed) or None (any variant of rel)."""
        if rel not in UNIVERSE:
            self.problem("unknown_path", path=str(fpath), rel=rel, target=target)
            return
        cands = [want_v] if want_v is not None else list(range(nvariants(rel)))
        mode = self.rnd.choices(("whole", "small", "pread", "mmap"), (5, 1, 2, 2))[0]
        try:
            fd = os.open(fpath, os.O_RDONLY)
        except OSError as e:
            self.oserror(e, "open", fpath, moving, target)
            return
        try:
            size = os.fstat(fd).st_size
            cands = [v for v in cands if VARIANTS[rel][v][0] == size]
            if not cands:
                self.problem("wrong_size", path=str(fpath), rel=rel, size=size, want_variant=want_v,
                             variant_sizes=[s for s, _ in VARIANTS[rel]], target=target)
                return
            if mode == "pread" and size:
                self._check_ranges(fd, fpath, rel, size, cands, target)
                return
            if mode == "mmap" and size:
                with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                    data = m[:]
            else:
                bs = 4096 if mode == "small" else MiB
                parts, off = [], 0
                while True:
                    b = os.read(fd, bs)
                    if not b:
                        break
                    parts.append(b)
                    off += len(b)
                    if off > size + MiB:
                        break
                data = b"".join(parts)
            self.c["bytes"] += len(data)
            self.c["files"] += 1
            self.c["files:" + mode] += 1
            dig = hashlib.sha256(data).hexdigest()
            if not any(VARIANTS[rel][v][1] == dig and VARIANTS[rel][v][0] == len(data) for v in cands):
                self._wrong(fpath, rel, data, size, cands, mode, target)
        except OSError as e:
            # the file is open: it keeps its version, so nothing is expected here
            self.oserror(e, "read:" + mode, fpath, False, target)
        except (ValueError, BufferError) as e:
            self.problem("error", errno=None, errname=type(e).__name__, op="mmap", path=str(fpath),
                         detail=str(e), target=target)
        finally:
            os.close(fd)

    def _wrong(self, fpath, rel, data, size, cands, mode, target):
        detail = {"path": str(fpath), "rel": rel, "mode": mode, "fstat_size": size, "read": len(data),
                  "candidates": cands, "target": target}
        for v in cands:
            exp = gen(rel, v)
            n = min(len(exp), len(data))
            first = next((i for i in range(0, n, 4096) if exp[i:i + 4096] != data[i:i + 4096]), None)
            if first is not None:
                first = next(i for i in range(first, min(first + 4096, n)) if exp[i] != data[i])
            detail[f"variant{v}"] = {"expected_len": len(exp), "first_diff": first,
                                     "expected_at": exp[first:first + 16].hex() if first is not None else None,
                                     "got_at": data[first:first + 16].hex() if first is not None else None}
        self.problem("wrong_bytes", **detail)

    def _check_ranges(self, fd, fpath, rel, size, cands, target):
        exps = {v: gen(rel, v) for v in cands}
        alive = set(cands)
        ranges = []
        for _ in range(self.rnd.randrange(2, 8)):
            off = self.rnd.randrange(0, size)
            ln = self.rnd.choice((1, 17, 4096, 65536, 200000))
            b = os.pread(fd, ln, off)
            self.c["bytes"] += len(b)
            ranges.append((off, ln, len(b)))
            alive = {v for v in alive if exps[v][off:off + ln] == b}
            if not alive:
                self.problem("wrong_bytes", path=str(fpath), rel=rel, mode="pread", offset=off, length=ln,
                             got_len=len(b), fstat_size=size, candidates=cands, ranges=ranges,
                             target=target)
                return
        # past the end: nothing
        b = os.pread(fd, 100, size)
        if b:
            self.problem("wrong_bytes", path=str(fpath), rel=rel, mode="pread-eof", got_len=len(b),
                         fstat_size=size, target=target)
        self.c["files"] += 1
        self.c["files:pread"] += 1

    # -- walking a version
    def walk(self, root, moving, target, expect=None, prefix=""):
        """Read every file below root.  expect: {rel: v} of a fixed version (exact listing).
        prefix: the path inside the version that root stands for (label views: '')."""
        found_files, found_dirs = {}, set()
        stack = [""]
        while stack:
            if self.stop.is_set() and moving:
                return None
            d = stack.pop()
            dpath = root / d if d else root
            try:
                names = os.listdir(dpath)
            except OSError as e:
                self.oserror(e, "listdir", dpath, moving, target)
                if d == "":
                    return None
                continue
            self.c["listdirs"] += 1
            for name in sorted(names):
                if d == "" and name == ".labels.jsonl" and prefix == "":
                    continue        # checked separately
                rel = f"{d}/{name}" if d else name
                p = root / rel
                try:
                    st = os.lstat(p)
                except OSError as e:
                    self.oserror(e, "lstat", p, moving, target)
                    continue
                if (st.st_mode & 0o170000) == 0o040000:
                    found_dirs.add(rel)
                    stack.append(rel)
                elif (st.st_mode & 0o170000) == 0o100000:
                    want = None
                    if expect is not None:
                        want = expect.get(rel)
                        if want is None:
                            found_files[rel] = None
                            continue
                        if st.st_size != VARIANTS[rel][want][0]:
                            self.problem("wrong_size", path=str(p), rel=rel, lstat_size=st.st_size,
                                         want=VARIANTS[rel][want][0], target=target)
                    found_files[rel] = st
                    self.check_file(p, rel, want, moving, target)
                    self.beat()
                else:
                    self.problem("unexpected_type", path=str(p), mode=oct(st.st_mode), target=target)
        if expect is not None:
            if set(found_files) != set(expect) or found_dirs != dirs_of(expect):
                self.problem("listing_mismatch", root=str(root), target=target,
                             missing=sorted(set(expect) - set(found_files))[:20],
                             extra=sorted(set(found_files) - set(expect))[:20],
                             dirs_missing=sorted(dirs_of(expect) - found_dirs)[:20],
                             dirs_extra=sorted(found_dirs - dirs_of(expect))[:20])
        return found_files

    def check_jsonl(self, vdir, rec, moving, target):
        p = vdir / ".labels.jsonl"
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError as e:
            self.oserror(e, "open", p, moving, target)
            return
        self.c["bytes"] += len(data)
        self.c["jsonl"] += 1
        try:
            got = [json.loads(ln) for ln in data.decode().splitlines()]
        except ValueError as e:
            self.problem("bad_jsonl", path=str(p), error=str(e), head=data[:200].decode("utf-8", "replace"),
                         target=target)
            return
        if rec is None:
            for o in got:
                if o.get("path") not in UNIVERSE or not isinstance(o.get("labels"), dict):
                    self.problem("bad_jsonl", path=str(p), line=o, target=target)
                    return
            return
        want = [{"path": q, "labels": dict(sorted(rec["labels"][q].items()))}
                for q in tree_order([q for q in rec["labels"] if rec["labels"][q]])]
        if got != want or (got and data != ("\n".join(json.dumps(o, separators=(",", ":")) for o in want)
                                            + "\n").encode()):
            self.problem("jsonl_mismatch", path=str(p), target=target, got=got[:5], want=want[:5],
                         got_n=len(got), want_n=len(want))

    def check_views(self, vdir, rec, target):
        """.labels views of a fixed version: keys, values and files, exactly."""
        labels = {p: l for p, l in rec["labels"].items() if l}
        keys = sorted({k for l in labels.values() for k in l})
        views = vdir / ".labels"
        try:
            got = sorted(os.listdir(views))
        except OSError as e:
            self.oserror(e, "listdir", views, False, target)
            return
        if got != keys:
            self.problem("view_mismatch", path=str(views), got=got, want=keys, target=target)
        if not keys:
            return
        k = self.rnd.choice(keys)
        vals = sorted({l[k] for l in labels.values() if k in l})
        try:
            got = sorted(os.listdir(views / k))
        except OSError as e:
            self.oserror(e, "listdir", views / k, False, target)
            return
        if got != vals:
            self.problem("view_mismatch", path=str(views / k), got=got, want=vals, target=target)
        val = self.rnd.choice(vals)
        sel = {p: rec["files"][p] for p, l in labels.items() if l.get(k) == val}
        self.walk(views / k / val, False, target + f"/.labels/{k}/{val}", expect=sel, prefix="view")
        # a composed filter: KEY=VALUE/KEY2/VALUE2/
        others = sorted({k2 for p in sel for k2 in labels[p] if k2 != k})
        try:
            got = sorted(os.listdir(views / f"{k}={val}"))
        except OSError as e:
            self.oserror(e, "listdir", views / f"{k}={val}", False, target)
            return
        if got != others:
            self.problem("view_mismatch", path=str(views / f"{k}={val}"), got=got, want=others, target=target)
        if others:
            k2 = self.rnd.choice(others)
            v2 = self.rnd.choice(sorted({labels[p][k2] for p in sel if k2 in labels[p]}))
            sel2 = {p: v for p, v in sel.items() if labels[p].get(k2) == v2}
            self.walk(views / f"{k}={val}" / k2 / v2, False, target + f"/.labels/{k}={val}/{k2}/{v2}",
                      expect=sel2, prefix="view")
        # a name matching nothing is ENOENT
        try:
            os.lstat(views / k / "no-such-value")
            self.problem("view_mismatch", path=str(views / k / "no-such-value"), got="exists",
                         want="ENOENT", target=target)
        except FileNotFoundError:
            pass
        except OSError as e:
            self.oserror(e, "lstat", views / k / "no-such-value", False, target)
        # xattrs of a few files
        for p in self.rnd.sample(sorted(rec["files"]), min(3, len(rec["files"]))):
            fp = vdir / p
            want = {f"user.label.{a}": b.encode() for a, b in rec["labels"].get(p, {}).items()}
            try:
                names = sorted(os.listxattr(fp))
                got = {n: os.getxattr(fp, n) for n in names if n.startswith("user.label.")}
            except OSError as e:
                self.oserror(e, "xattr", fp, False, target)
                continue
            self.c["xattr_checks"] += 1
            if got != want:
                self.problem("xattr_mismatch", path=str(fp), got={a: b.decode() for a, b in got.items()},
                             want={a: b.decode() for a, b in want.items()}, target=target)

    # -- one round
    def round(self):
        self.reg.refresh()
        ids = self.reg.order
        kinds = ["main", "env", "main-labels"]
        w = [3, 2, 1]
        if ids:
            kinds += ["commit", "prefix", "commit-labels"]
            w += [2, 1, 2]
        if self.reg.tags:
            kinds.append("tag")
            w.append(2)
        kind = self.rnd.choices(kinds, w)[0]
        self.c["round:" + kind] += 1
        if kind == "main":
            self.walk(self.repo_dir / "main", True, "main")
            if self.rnd.random() < 0.3:
                self.check_jsonl(self.repo_dir / "main", None, True, "main")
        elif kind == "env":
            e = self.rnd.choice(ENVS)
            self.walk(self.repo_dir / e, True, e)
        elif kind == "main-labels":
            k = self.rnd.choice(sorted(LABEL_VALUES))
            v = self.rnd.choice(LABEL_VALUES[k])
            self.walk(self.repo_dir / "main" / ".labels" / k / v, True, f"main/.labels/{k}/{v}")
        elif kind in ("commit", "prefix", "commit-labels", "tag"):
            if kind == "tag":
                name = self.rnd.choice(sorted(self.reg.tags))
                cid = self.reg.tags[name]
                vdir, target = self.repo_dir / name, f"tag {name} ({cid[:12]})"
            else:
                # recent versions more often than old ones
                i = len(ids) - 1 - min(int(self.rnd.expovariate(1 / 8)), len(ids) - 1) \
                    if self.rnd.random() < 0.7 else self.rnd.randrange(len(ids))
                cid = ids[i]
                name = cid[:8] if kind == "prefix" else cid
                vdir, target = self.repo_dir / ".commits" / name, f".commits/{name}"
            rec = self.reg.commits.get(cid)
            if rec is None:
                self.problem("registry", detail=f"tag {name} names unknown commit {cid}")
                return
            if kind == "commit-labels":
                self.check_views(vdir, rec, target)
            else:
                self.walk(vdir, False, target, expect=rec["files"])
                if any(rec["labels"].values()) or self.rnd.random() < 0.2:
                    self.check_jsonl(vdir, rec, False, target)
            if self.rnd.random() < 0.1:
                try:
                    os.listdir(self.repo_dir / ".commits")
                except OSError as e:
                    self.oserror(e, "listdir", self.repo_dir / ".commits", False, target)
        self.c["rounds"] += 1
        self.beat()


def reader_main(idx, mnt, reg_path, seed, heartbeat, stop, q):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    r = Reader(idx, mnt, reg_path, seed, heartbeat, stop)
    fatal = None
    try:
        r.beat()
        while not stop.is_set():
            r.round()
    except Unexpected as e:
        fatal = str(e)
    except Exception:
        fatal = traceback.format_exc()
    q.put({"reader": idx, "counts": dict(r.c), "problems": dict(r.problems), "fatal": fatal})


# ---- the CLI side --------------------------------------------------------------------

class Soak:
    def __init__(self, args):
        self.args = args
        self.bin = str(args.artifs)
        self.tmp = Path(args.workdir)
        self.store = self.tmp / "store"
        self.mnt = self.tmp / "mnt"
        self.work = self.tmp / "work"
        self.reg = Registry(self.tmp / "registry.jsonl")
        self.rnd = random.Random(args.seed)
        self.env = self._env()
        self.ops = collections.Counter()
        self.problems = collections.defaultdict(list)
        self.files = {}         # the working tree: path -> variant
        self.labels = {}        # main's labels: path -> {k: v}
        self.head = None
        self.seq = 0
        self.proc = None
        self.daemon_err = None
        self.rss = []           # (t, rss_kib, threads, fds, anon_kib, file_kib, nodes)
        self.gc_removed = collections.Counter()
        self.cli_times = []

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFS_")}
        home = self.tmp / "home"
        home.mkdir(parents=True, exist_ok=True)
        env.update(HOME=str(home), ARTIFS_AUTHOR="soak <soak@example.org>", LC_ALL="C.UTF-8")
        env.pop("XDG_DATA_HOME", None)
        return env

    def problem(self, kind, **detail):
        self.ops["problem:" + kind] += 1
        if len(self.problems[kind]) < MAX_RECORDED:
            detail["t"] = round(time.time(), 3)
            self.problems[kind].append(detail)

    def cli(self, *args, ok=(0,), op=None):
        """Run artifs; a status outside ok, a signal or a sanitizer report is a problem."""
        cmd = [self.bin, "--store", str(self.store)] + [str(a) for a in args]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
        except subprocess.TimeoutExpired:
            self.problem("cli_timeout", cmd=" ".join(cmd))
            return None
        self.cli_times.append(time.monotonic() - t0)
        self.ops["cli"] += 1
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode < 0:
            self.problem("cli_crash", cmd=" ".join(cmd), signal=-p.returncode, stderr=err[-2000:])
        elif p.returncode not in ok:
            self.problem("cli_failed", cmd=" ".join(cmd), rc=p.returncode, stderr=err[-2000:])
        if any(m in p.stderr for m in SANITIZER_MARKERS):
            self.problem("cli_sanitizer", cmd=" ".join(cmd), stderr=err[-6000:])
        if op:
            self.ops[op] += 1
        return p

    # -- the working tree
    def write(self, path, v):
        fp = self.work / path
        fp.parent.mkdir(parents=True, exist_ok=True)
        fp.write_bytes(gen(path, v))
        self.files[path] = v

    def remove(self, path):
        fp = self.work / path
        fp.unlink()
        del self.files[path]
        d = fp.parent
        while d != self.work and not any(d.iterdir()):
            d.rmdir()
            d = d.parent

    def mutate(self):
        """Change 1-4 paths: a new variant, or an optional path appears or vanishes."""
        for _ in range(self.rnd.randrange(1, 5)):
            p = self.rnd.choice(sorted(UNIVERSE))
            optional = UNIVERSE[p][2]
            if p in self.files and optional and self.rnd.random() < 0.4:
                self.remove(p)
            elif p in self.files:
                self.write(p, (self.files[p] + self.rnd.randrange(1, nvariants(p))) % nvariants(p))
            else:
                self.write(p, self.rnd.randrange(nvariants(p)))
        if self.rnd.random() < 0.8:
            # keep the two dups equal most of the time (one inode in the mount)
            self.write("shared/dup2.bin", self.files["shared/dup1.bin"])

    def record(self, cid, what):
        """A new head of main: carry labels over by path, check them with the CLI, register."""
        if cid == self.head:
            self.problem("no_commit", what=what, head=cid)
            return
        self.labels = {p: l for p, l in self.labels.items() if p in self.files and l}
        self.seq += 1
        self.head = cid
        self.reg.append({"type": "commit", "id": cid, "seq": self.seq, "what": what,
                         "files": dict(self.files), "labels": {p: dict(l) for p, l in self.labels.items()}})
        self.ops["versions"] += 1
        p = self.cli("label", "show", f"{REPO}@{cid}", "--json")
        if p is not None and p.returncode == 0:
            try:
                got = json.loads(p.stdout)
                got = {o["path"]: o["labels"] for o in got if o["labels"]}
            except (ValueError, KeyError, TypeError) as e:
                self.problem("label_show", commit=cid, error=str(e), out=p.stdout[:500].decode())
                return
            if got != self.labels:
                self.problem("label_model", commit=cid, what=what,
                             only_cli={k: v for k, v in got.items() if self.labels.get(k) != v},
                             only_model={k: v for k, v in self.labels.items() if got.get(k) != v})

    def op_commit(self):
        self.mutate()
        p = self.cli("commit", REPO, self.work, "-m", f"soak {self.seq + 1}", "--no-verify",
                     "--meta", f"seq={self.seq + 1}", op="commit")
        if p is None or p.returncode:
            return
        cid = p.stdout.decode().strip()
        if cid == self.head:
            return      # the mutation happened to restore the head's tree: nothing committed
        self.record(cid, "commit")

    def op_label(self):
        present = sorted(self.files)
        targets = present + sorted(dirs_of(present))
        t = self.rnd.choice(targets)
        below = [p for p in present if p == t or p.startswith(t + "/")]
        if self.rnd.random() < 0.25:
            k = self.rnd.choice(sorted(LABEL_VALUES))
            p = self.cli("label", "rm", REPO, t, k, "-m", "soak rm", "--no-verify", op="label_rm")
            change = lambda: [self.labels.get(f, {}).pop(k, None) for f in below]  # noqa: E731
        else:
            kv = {k: self.rnd.choice(LABEL_VALUES[k])
                  for k in self.rnd.sample(sorted(LABEL_VALUES), self.rnd.randrange(1, 3))}
            p = self.cli("label", "set", REPO, t, *[f"{k}={v}" for k, v in kv.items()],
                         "-m", "soak set", "--no-verify", op="label_set")
            change = lambda: [self.labels.setdefault(f, {}).update(kv) for f in below]  # noqa: E731
        if p is None or p.returncode:
            return
        before = {f: dict(l) for f, l in self.labels.items() if l}
        change()
        self.labels = {f: l for f, l in self.labels.items() if l}
        cid = p.stdout.decode().strip()
        if cid == self.head:
            if self.labels != before:
                self.problem("label_model", what="label command made no commit but the model changed",
                             cmd=p.args[3:], head=cid)
            return
        if self.labels == before:
            self.problem("label_model", what="label command committed but the model did not change",
                         cmd=p.args[3:], commit=cid)
        self.record(cid, "label")

    def op_tag(self):
        if not self.reg.order:
            return
        name = f"t{self.ops['tag'] + 1}"
        cid = self.head if self.rnd.random() < 0.6 else self.rnd.choice(self.reg.order)
        p = self.cli("tag", REPO, name, cid, "--no-verify", op="tag")
        if p is not None and p.returncode == 0:
            self.reg.append({"type": "tag", "name": name, "id": cid})

    def op_promote(self):
        env = self.rnd.choice(ENVS)
        if self.rnd.random() < 0.3:
            # rollback; without an earlier version it is refused (exit 1), and that is fine
            p = self.cli("rollback", REPO, env, "-m", "soak rollback", "--no-verify", ok=(0, 1),
                         op="rollback")
            if p is not None and p.returncode == 1:
                if b"no earlier version" not in p.stderr:
                    self.problem("cli_failed", cmd=" ".join(p.args), rc=1,
                                 stderr=p.stderr.decode(errors="replace")[-2000:])
                else:
                    self.ops["rollback_refused"] += 1
            return
        if self.reg.tags and self.rnd.random() < 0.3:
            rev = self.rnd.choice(sorted(self.reg.tags))
        else:
            rev = self.rnd.choice(self.reg.order[-20:])
        self.cli("promote", REPO, rev, env, "-m", "soak promote", "--no-verify", op="promote")

    def op_refused(self):
        """A commit (or relabel) refused by the pre-commit hook: garbage for gc."""
        if self.rnd.random() < 0.7:
            junk = self.work / f"junk-{self.seq}-{self.ops['refused']}.bin"
            junk.write_bytes(random.Random(f"junk{time.time_ns()}").randbytes(self.rnd.randrange(1, 2 * MiB)))
            try:
                p = self.cli("commit", REPO, self.work, "-m", "refused", ok=(1,), op="refused")
            finally:
                junk.unlink()
        else:
            t = self.rnd.choice(sorted(self.files))
            q = self.rnd.choice([v for v in LABEL_VALUES["q"] if v != self.labels.get(t, {}).get("q")])
            p = self.cli("label", "set", REPO, t, f"q={q}", "-m", "refused", ok=(1,), op="refused")
        if p is not None and p.returncode == 1 and b"hook refused" not in p.stderr:
            self.problem("cli_failed", cmd=" ".join(p.args), rc=1, why="not refused by the hook",
                         stderr=p.stderr.decode(errors="replace")[-2000:])

    def op_gc(self):
        dry = self.rnd.random() < 0.25
        p = self.cli("gc", "--json", *(["--dry-run"] if dry else []), op="gc_dry" if dry else "gc")
        if p is not None and p.returncode == 0 and not dry:
            try:
                j = json.loads(p.stdout)
                for k, v in j["removed"].items():
                    self.gc_removed[k] += v
                self.gc_removed["bytes_freed"] += j["bytes_freed"]
            except (ValueError, KeyError) as e:
                self.problem("gc_json", error=str(e), out=p.stdout[:500].decode())

    # -- setup
    def setup(self):
        for d in (self.store.parent, self.mnt, self.work):
            d.mkdir(parents=True, exist_ok=True)
        self.cli("init")
        self.cli("create", "dataset", REPO.split("/", 1)[1])
        hooks = self.store / "hooks"
        hooks.mkdir(exist_ok=True)
        h = hooks / "pre-commit"
        h.write_text("#!/bin/sh\necho 'soak: hook refused' >&2\nexit 1\n")
        h.chmod(0o755)
        for p in UNIVERSE:
            if not UNIVERSE[p][2] or self.rnd.random() < 0.7:
                self.write(p, 0)
        self.write("shared/dup2.bin", self.files["shared/dup1.bin"])
        p = self.cli("commit", REPO, self.work, "-m", "soak 1", "--no-verify")
        if p is None or p.returncode:
            raise SystemExit(2)
        self.record(p.stdout.decode().strip(), "commit")
        p = self.cli("label", "set", REPO, "train", "split=train", "--no-verify")
        self.labels.update({f: {"split": "train"} for f in self.files if f.startswith("train/")})
        self.record(p.stdout.decode().strip(), "label")
        self.cli("tag", REPO, "t0", "--no-verify")
        self.reg.append({"type": "tag", "name": "t0", "id": self.head})
        for e in ENVS:
            self.cli("promote", REPO, self.head, e, "--no-verify")
        if any(self.problems.values()):
            print(json.dumps(self.problems, indent=1), file=sys.stderr)
            raise SystemExit(2)

    def mount(self):
        self.log = self.tmp / "mount.log"
        self.daemon_err = self.tmp / "mount.stderr"
        cmd = [self.bin, "--store", str(self.store), "mount", str(self.mnt), "--log", str(self.log),
               "--foreground"]
        with open(self.daemon_err, "wb") as err:
            self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        end = time.monotonic() + 30
        while time.monotonic() < end and not is_mounted(self.mnt) and self.proc.poll() is None:
            time.sleep(0.05)
        if not is_mounted(self.mnt):
            raise RuntimeError(f"mount did not come up (exit {self.proc.poll()}): "
                               f"{self.daemon_err.read_text(errors='replace')[-2000:]}")

    def sample(self):
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/status") as f:
                st = f.read()
            rss = int(re.search(r"VmRSS:\s+(\d+) kB", st).group(1))
            anon = int(re.search(r"RssAnon:\s+(\d+) kB", st).group(1))
            rfile = int(re.search(r"RssFile:\s+(\d+) kB", st).group(1))
            thr = int(re.search(r"Threads:\s+(\d+)", st).group(1))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, AttributeError):
            return
        try:
            nodes = os.statvfs(self.mnt).f_files     # the daemon's node table (statfs f_files)
        except OSError:
            nodes = -1
        self.rss.append((round(time.monotonic() - self.t0, 1), rss, thr, fds, anon, rfile, nodes))

    # -- the run
    def run(self):
        global VARIANTS
        args = self.args
        t = time.monotonic()
        VARIANTS = variant_table()
        print(f"soak: {len(UNIVERSE)} paths, variants hashed in {time.monotonic() - t:.2f} s; "
              f"workdir {self.tmp}", flush=True)
        self.setup()
        self.mount()
        ctx = multiprocessing.get_context("fork")
        stop = ctx.Event()
        hb = ctx.Array("d", args.readers, lock=False)
        q = ctx.Queue()
        readers = []
        results = {}
        stalled = []
        fatal_daemon = None
        self.t0 = time.monotonic()
        try:
            for i in range(args.readers):
                hb[i] = time.time()
                pr = ctx.Process(target=reader_main, args=(i, self.mnt, self.reg.path, args.seed * 100 + i,
                                                           hb, stop, q), daemon=True)
                pr.start()
                readers.append(pr)
            end = self.t0 + args.duration
            next_sample = 0.0
            ops = [(self.op_commit, 30), (self.op_label, 20), (self.op_tag, 6), (self.op_promote, 14),
                   (self.op_refused, 8), (self.op_gc, 6)]
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_sample:
                    self.sample()
                    next_sample = now + args.sample_every
                    lag = [(i, time.time() - hb[i]) for i in range(args.readers) if readers[i].is_alive()]
                    stalled = [(i, round(s, 1)) for i, s in lag if s > STALL]
                    if stalled:
                        for i, s in stalled:
                            self.problem("reader_stalled", reader=i, seconds=s, pid=readers[i].pid,
                                         wchan=_read(f"/proc/{readers[i].pid}/wchan"),
                                         stack=_read(f"/proc/{readers[i].pid}/stack")[:2000],
                                         daemon_wchan=_threads_wchan(self.proc.pid))
                        break
                    if self.proc.poll() is not None:
                        fatal_daemon = f"daemon exited with status {self.proc.returncode} during the soak"
                        break
                    if not is_mounted(self.mnt):
                        fatal_daemon = "mount vanished during the soak"
                        break
                    if not all(r.is_alive() for r in readers):
                        break       # a reader gave up (its result says why)
                fn = self.rnd.choices([o for o, _ in ops], [w for _, w in ops])[0]
                fn()
                time.sleep(self.rnd.uniform(0.02, args.pause))
            self.sample()
            stop.set()
            deadline = time.monotonic() + 60
            while len(results) < len(readers) and time.monotonic() < deadline:
                try:
                    r = q.get(timeout=1)
                    results[r["reader"]] = r
                except Exception:
                    if not any(r.is_alive() for r in readers) and q.empty():
                        break
            alive_end = self.proc.poll() is None
            mounted_end = is_mounted(self.mnt)
            if fatal_daemon is None and not alive_end:
                fatal_daemon = f"daemon exited with status {self.proc.returncode}"
            elif fatal_daemon is None and not mounted_end:
                fatal_daemon = "not mounted at the end"
        finally:
            stop.set()
            cleanup = self.unmount()
            for pr in readers:
                pr.join(10)
                if pr.is_alive():
                    pr.kill()
                    pr.join(5)
        return self.summary(results, cleanup, fatal_daemon, readers)

    def unmount(self):
        """fusermount3 -u, then -uz; the daemon must exit (killed otherwise).  Problems found."""
        out = []
        if self.proc is None:
            return out
        if is_mounted(self.mnt):
            r = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True, timeout=60)
            if r.returncode:
                out.append(f"fusermount3 -u: {r.stderr.decode(errors='replace').strip()}; used -uz")
                subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True, timeout=60)
        try:
            rc = self.proc.wait(15)
            if rc != 0:
                out.append(f"daemon exited with status {rc} after unmount")
        except subprocess.TimeoutExpired:
            out.append("daemon did not exit within 15 s of unmount; killed")
            self.proc.kill()
            self.proc.wait(10)
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True, timeout=60)
            out.append("still mounted after the daemon exited")
        return out

    def summary(self, results, cleanup, fatal_daemon, readers):
        args = self.args
        counts = collections.Counter()
        problems = collections.defaultdict(list)
        fatal = []
        for i in range(len(readers)):
            r = results.get(i)
            if r is None:
                fatal.append(f"reader {i} returned no result (exit code {readers[i].exitcode})")
                continue
            counts.update(r["counts"])
            for k, v in r["problems"].items():
                problems[k] += v
            if r["fatal"]:
                fatal.append(f"reader {i}: {r['fatal']}")
        for k, v in self.problems.items():
            problems["cli:" + k] += v
        fails = []
        if fatal_daemon:
            fails.append(fatal_daemon)
        fails += fatal + cleanup
        for k, v in sorted(problems.items()):
            n = self.ops["problem:" + k[4:]] if k.startswith("cli:") else counts["problem:" + k]
            fails.append(f"{n or len(v)} x {k}")
        # the store after the soak
        fsck = self.cli("fsck", "--json", ok=(0,))
        fsck_ok = fsck is not None and fsck.returncode == 0
        if not fsck_ok:
            fails.append("artifs fsck after the soak: " +
                         (fsck.stdout.decode(errors="replace")[-3000:] if fsck else "timeout"))
        # daemon memory
        rss = [s[1] for s in self.rss]
        warm_t = min(args.warmup, args.duration * 0.3)
        after = [s[1] for s in self.rss if s[0] >= warm_t]
        base = after[0] if after else (rss[0] if rss else 0)
        growth = (max(after) - base) / 1024 if after else 0.0
        if growth > args.rss_bound_mib:
            fails.append(f"daemon RSS grew {growth:.1f} MiB after warm-up (bound {args.rss_bound_mib} MiB)")
        if not rss:
            fails.append("no RSS sample of the daemon")
        logtext = self.log.read_text(errors="replace") if self.log.exists() else ""
        errlines = [ln for ln in logtext.splitlines() if re.search(r"\b(error|warning|crit|alert)\b", ln)]
        daemon_err = self.daemon_err.read_bytes() if self.daemon_err and self.daemon_err.exists() else b""
        if any(m in daemon_err for m in SANITIZER_MARKERS):
            fails.append("sanitizer report from the daemon: " + daemon_err[-4000:].decode(errors="replace"))
        if errlines:
            fails.append(f"{len(errlines)} error/warning lines in the daemon log")
        ct = sorted(self.cli_times)
        s = {
            "pass": not fails,
            "failures": fails,
            "duration_s": args.duration,
            "readers": args.readers,
            "seed": args.seed,
            "bytes_verified": counts["bytes"],
            "files_verified": counts["files"],
            "read_modes": {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("files:")},
            "rounds": {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("round:")},
            "listdirs": counts["listdirs"],
            "jsonl_checks": counts["jsonl"],
            "xattr_checks": counts["xattr_checks"],
            "enoent_expected": counts["enoent_expected"],
            "enoent_expected_by_op": {k.split(":", 1)[1]: v for k, v in counts.items()
                                      if k.startswith("enoent_expected:")},
            "cli_ops": {k: v for k, v in self.ops.items() if not k.startswith("problem:")},
            "cli_seconds_median_max": [round(ct[len(ct) // 2], 3), round(ct[-1], 3)] if ct else None,
            "versions": self.seq,
            "tags": len(self.reg.tags),
            "gc_removed": dict(self.gc_removed),
            "daemon_rss_kib": {"first": rss[0] if rss else None, "last": rss[-1] if rss else None,
                               "max": max(rss) if rss else None, "after_warmup_base": base,
                               "growth_after_warmup_mib": round(growth, 1), "samples": len(rss)},
            "daemon_rss_anon_kib": {"first": self.rss[0][4], "last": self.rss[-1][4],
                                    "max": max(x[4] for x in self.rss)} if self.rss else None,
            "daemon_rss_file_kib_first_last": [self.rss[0][5], self.rss[-1][5]] if self.rss else None,
            # (seconds, VmRSS MiB, RssAnon MiB, nodes in the daemon's table)
            "daemon_rss_series": [(x[0], round(x[1] / 1024, 1), round(x[4] / 1024, 1), x[6])
                                  for x in self.rss[::max(1, len(self.rss) // 20)] + self.rss[-1:]],
            "daemon_threads_first_last": [self.rss[0][2], self.rss[-1][2]] if self.rss else None,
            "daemon_fds_first_last_max": [self.rss[0][3], self.rss[-1][3], max(x[3] for x in self.rss)]
            if self.rss else None,
            "daemon_log_error_lines": errlines[:20],
            "store_bytes": (self.store / "data.mdb").stat().st_size if (self.store / "data.mdb").exists() else None,
            "fsck_ok": fsck_ok,
            "problems": {k: v[:10] for k, v in problems.items()},
            "workdir": str(self.tmp),
        }
        return s


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return f"({e})"


def _threads_wchan(pid):
    out = {}
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            out[t] = _read(f"/proc/{pid}/task/{t}/wchan")
    except OSError:
        pass
    return out


def _unescape(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def is_mounted(path):
    real = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, b = line.rstrip("\n").split(" - ", 1)
            if _unescape(a.split(" ")[4]) == real:
                found = b.split(" ")[0]
    return found == "fuse.artifs"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=180, help="seconds of load (default 180)")
    ap.add_argument("--readers", type=int, default=4, help="reader processes (default 4)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the CLI's choices (default 1)")
    ap.add_argument("--artifs", default=os.environ.get("ARTIFS_BIN") or SRC_ROOT / "build" / "cli" / "artifs",
                    help="the binary (default $ARTIFS_BIN, else build/cli/artifs)")
    ap.add_argument("--workdir", help="directory for the store and mount (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (kept anyway on failure)")
    ap.add_argument("--pause", type=float, default=0.3, help="max pause between CLI operations (s)")
    ap.add_argument("--sample-every", type=float, default=2.0, help="RSS sampling period (s)")
    ap.add_argument("--warmup", type=float, default=30.0, help="RSS warm-up (s; at most 30%% of the run)")
    ap.add_argument("--rss-bound-mib", type=float, default=100.0, help="allowed RSS growth after warm-up")
    ap.add_argument("--json-out", help="also write the summary here")
    args = ap.parse_args()
    if not Path(args.artifs).is_file():
        print(f"soak: artifs binary not found: {args.artifs}", file=sys.stderr)
        return 2
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        print("soak: needs /dev/fuse and fusermount3", file=sys.stderr)
        return 2
    own = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="artifs-soak-")
    soak = Soak(args)
    # SIGTERM (ctest's timeout) unwinds through the finally that unmounts
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        s = soak.run()
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 1
    except SystemExit as e:
        print(f"soak: setup failed ({e.code}); workdir kept: {args.workdir}", file=sys.stderr)
        return 2
    out = json.dumps(s, indent=1, default=str)
    if args.json_out:
        Path(args.json_out).write_text(out + "\n")
    print(out)
    r = s["daemon_rss_kib"]
    print(f"soak: {'PASS' if s['pass'] else 'FAIL'}: {s['bytes_verified'] / MiB:.1f} MiB in "
          f"{s['files_verified']} file reads verified, {sum(s['rounds'].values())} version walks, "
          f"{s['versions']} versions, {s['cli_ops'].get('cli', 0)} CLI runs, "
          f"{s['enoent_expected']} expected ENOENT; daemon RSS first/last/max "
          f"{r['first']}/{r['last']}/{r['max']} KiB", flush=True)
    for f in s["failures"]:
        print(f"soak: failure: {f}", file=sys.stderr)
    if s["pass"] and own and not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    elif not s["pass"]:
        print(f"soak: workdir kept: {args.workdir}", file=sys.stderr)
    return 0 if s["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
