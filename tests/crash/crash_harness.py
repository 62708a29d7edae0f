#!/usr/bin/env python3
"""Crash harness: SIGKILL artifs at random points and check that nothing is lost.

Every round runs one operation against a real store and kills it with
SIGKILL after a random delay drawn uniformly from [0, T], where T is the
median duration of that operation on the same data (measured by full
runs in the first epoch's setup, and updated by every round in which the
operation ended before its kill), so the kills land throughout the
operation: process start, reading and chunking, the intermediate 64 MiB
batch transactions, the final transaction, the exit.

Operations (weights in OPS below):

  commit-dir      artifs commit datasets/d DIR         DIR: ~300 small files in 10 dirs, an
                                                         empty dir, a symlink and a 96 MiB file;
                                                         before each round some small files are
                                                         changed, added, removed, chmodded, and
                                                         the big file is either new (half the
                                                         rounds: 96 MiB to write, two batches)
                                                         or edited in 1-4 MiB; the two kinds are
                                                         timed apart
  commit-archive  artifs commit datasets/d@arc X.tar   a tar of the same tree, changed the same way
  label-import    artifs label import datasets/lab F   1,000,000 rows path,key,value (4,000 files
                                                         x 250 keys); three label files in turn
  tag             artifs tag datasets/d tN REV         REV: a branch, tag, env or id prefix
  promote         artifs promote datasets/d REV ENV    ENV: dev, staging, production
  gc              artifs gc                            first a commit of 96 MiB of fresh data to
                                                         branch 'scratch' is killed once it read
                                                         72 MiB (/proc/PID/io), after its first
                                                         batch is committed: gc has garbage

After EACH kill the harness checks:

  * `artifs fsck --json` says "ok": true with no faults;
  * every ref (`branch --list`, `tag --list`, `envs`) is where the model says,
    except the interrupted operation's ref, which is at its old commit or at
    its new one (for commits and label imports: a commit whose parent is the
    old head and whose content is the round's tree or labels);
  * every commit named by a ref, by `log` of the round's branch or by
    `history --all` is one the harness made, and each ref's history chains
    (every entry moves from where the previous one went; the last one goes
    where the ref is);
  * versions read back byte-exact: the round's ref and one random named
    version, every time: `ls -r -l --json` against the kept manifest (paths,
    types, sizes, executable bits), then `cat` of a sample of the files whose
    ids were never read back, compared by sha256 (a file id once read back is
    known: fsck proves every stored file still hashes to its id); for datasets/lab
    `label show` of sampled files against the label file; and every
    --full-every kills a complete `checkout` compared with the manifest;
  * with probability --gc-rate, `artifs gc` runs to completion before the
    rerun, and fsck and the refs are checked again;
  * the interrupted operation succeeds when run again (exit 0, the ref at the
    new commit, which a commit prints; after a killed gc, `gc --dry-run` finds
    nothing left to collect).

Rounds are grouped in epochs: a fresh store every --epoch-rounds rounds, so
the store stays below ~1 GB and fsck stays fast.  At the end of an epoch the
branch heads are checked out in full, and gc and fsck run again.

Reproducing: the operation, the delay as a fraction of T and the data of
round R are a function of (--seed, R) only; what exactly the kill interrupts
also depends on timing.  A violation prints the seed, epoch and round, and
keeps a copy of the store next to the work directory; rerun with the same
--seed and -v to see every round.

Usage:
  ARTIFS_BIN=build/cli/artifs tests/crash/crash_harness.py [--seed N] [--kills N]
         [--epoch-rounds N] [--full-every N] [--gc-rate P] [--workdir DIR] [--keep] [-v]

Defaults: --seed 1 --kills 200 (about 3-4 minutes on an idle 2-core machine;
--workdir /dev/shm is faster where memory allows).  ctest runs a short
variant: 60 kills, label "crash".  Exit status: 0 every check held; 1 a
violation, or fewer kills than asked for; 2 usage.
"""

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20

# operation -> weight of being picked for a round
OPS = {
    "commit-dir": 25,
    "commit-archive": 19,
    "label-import": 12,
    "tag": 15,
    "promote": 15,
    "gc": 14,
}

REPO = "datasets/d"
LAB = "datasets/lab"
ENVS = ("dev", "staging", "production")
BIG = 96 * MiB          # > one 64 MiB batch: a commit of it writes an intermediate batch
JUNK = 96 * MiB
LAB_DIRS, LAB_FILES, LAB_KEYS = 40, 100, 250       # 4,000 files x 250 keys = 1,000,000 rows
ZERO = "0" * 32
SANITIZER_MARKERS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:",
                     b"SUMMARY: UndefinedBehaviorSanitizer")


class Violation(Exception):
    pass


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def walk_manifest(root, known=None):
    """{relpath: entry} for everything below root.

    entry: ("file", sha256, size, exec) | ("link", target) | ("dir",).
    known: {relpath: sha256} of files whose digest is already known (the big file).
    """
    root = str(root)
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            elif stat.S_ISREG(st.st_mode):
                d = (known or {}).get(rel) or sha256_file(full)
                out[rel] = ("file", d, st.st_size, bool(st.st_mode & 0o100))
            else:
                raise RuntimeError(f"unexpected file type {full}")
    return out


def write_stream(path, rng, size):
    """size seeded pseudo-random bytes (SHAKE-128 of a key drawn from rng); the sha256."""
    key = rng.randbytes(16)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(0, size, 4 * MiB):
            b = hashlib.shake_128(key + i.to_bytes(8, "little")).digest(min(4 * MiB, size - i))
            f.write(b)
            h.update(b)
    return h.hexdigest()


def lab_value(variant, fi, k):
    return f"v{variant}.{(variant * 7919 + fi * 131 + k * 17) % 10007}"


def lab_path(fi):
    return f"d{fi // LAB_FILES:02d}/f{fi % LAB_FILES:03d}.txt"


# ---------------------------------------------------------------------------


class Artifs:
    def __init__(self, binary, store, env, timeout):
        self.bin = str(binary)
        self.store = str(store)
        self.env = env
        self.timeout = timeout
        self.stats = Artifs.stats

    stats = {}          # command -> (count, seconds), for --verbose

    def argv(self, *args):
        return [self.bin, "--store", self.store, *map(str, args)]

    def run(self, *args, ok=True):
        t0 = time.monotonic()
        p = subprocess.run(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=self.timeout)
        k = str(args[0]) if args[0] != "label" else f"label {args[1]}"
        n, t = self.stats.get(k, (0, 0.0))
        self.stats[k] = (n + 1, t + time.monotonic() - t0)
        if any(m in p.stderr for m in SANITIZER_MARKERS):
            raise Violation(f"sanitizer report from artifs {' '.join(map(str, args))}:\n"
                            f"{p.stderr[:4000].decode('utf-8', 'replace')}")
        if ok and p.returncode != 0:
            raise Violation(f"artifs {' '.join(map(str, args))}: exit {p.returncode}: "
                            f"{p.stderr[:2000].decode('utf-8', 'replace').strip()}")
        return p

    def json(self, *args):
        return json.loads(self.run(*args, "--json").stdout)

    def popen(self, *args):
        return subprocess.Popen(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class Source:
    """The directory committed to datasets/d: ~300 small files in 10 dirs, a 64 MiB file."""

    def __init__(self, root, rng):
        self.root = Path(root)
        self.next_name = 0
        shutil.rmtree(self.root, ignore_errors=True)
        for d in range(10):
            (self.root / f"d{d}").mkdir(parents=True)
            for i in range(30):
                self._write_small(rng, self.root / f"d{d}" / f"f{i:03d}.bin")
        (self.root / "empty").mkdir()
        os.symlink("d0/f000.bin", self.root / "link")
        self.big_digest = None
        self._write_big_full(rng)
        self.manifest = walk_manifest(self.root, {"big.bin": self.big_digest})

    def _write_small(self, rng, path):
        path.write_bytes(rng.randbytes(rng.randrange(1, 20000)))

    def _write_big_full(self, rng):
        self.big_digest = write_stream(self.root / "big.bin", rng, BIG)

    def mutate(self, rng, new=None):
        """Change the tree: the big file (all of it, or some MiB) and some small files.

        new: rewrite the whole big file (default: with probability 1/2).  Sets
        self.new_big: True when the commit of the tree has ~96 MiB to write."""
        r = rng.random()
        self.new_big = (r < 0.5) if new is None else new
        if self.new_big:
            self._write_big_full(rng)
        else:
            with open(self.root / "big.bin", "r+b") as f:
                for _ in range(rng.randrange(1, 5)):
                    f.seek(rng.randrange(BIG // MiB) * MiB)
                    f.write(hashlib.shake_128(rng.randbytes(16)).digest(MiB))
            self.big_digest = sha256_file(self.root / "big.bin")
        files = sorted(p for p in self.root.glob("d*/*") if p.is_file() and not p.is_symlink())
        for p in rng.sample(files, min(12, len(files))):
            self._write_small(rng, p)
        for p in rng.sample(files, 3):
            if p.exists():
                p.unlink()
        for _ in range(3):
            self.next_name += 1
            self._write_small(rng, self.root / f"d{rng.randrange(10)}" / f"n{self.next_name:05d}.bin")
        files = sorted(p for p in self.root.glob("d*/*") if p.is_file())
        p = rng.choice(files)
        os.chmod(p, os.stat(p).st_mode ^ 0o111)
        self.manifest = walk_manifest(self.root, {"big.bin": self.big_digest})
        return dict(self.manifest)


# ---------------------------------------------------------------------------


class Harness:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.work = Path(args.workdir)
        self.violations = []
        self.kills = {op: 0 for op in OPS}
        self.kills["commit (gc prep)"] = 0
        self.finished = {op: 0 for op in OPS}     # rounds where the op ended before its kill
        self.moved = {op: 0 for op in OPS}        # kills that came after the ref had moved
        self.gc_after_kill = 0
        self.full_checks = 0
        self.rounds = 0
        self.durations = {op: [] for op in ["commit-dir/new", "commit-dir/edit", "commit-archive/new",
                                            "commit-archive/edit", "label-import", "tag",
                                            "promote", "gc", "gc-prep"]}
        self.epoch = 0
        self.round = 0
        self.op = "setup"
        self.delay = 0.0
        self.total_kills = 0
        self.time_in = {}
        self.verified = {}      # file id -> sha256 of its bytes, read back with cat
        self.prep_finished = 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFS_")}
        home = self.work / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env.update(HOME=str(home), ARTIFS_AUTHOR="crash <crash@example.org>", LC_ALL="C.UTF-8")
        self.env.pop("XDG_DATA_HOME", None)
        self.make_lab_data()

    # -- logging ------------------------------------------------------------

    def log(self, msg):
        if self.args.verbose:
            print(f"[e{self.epoch} r{self.round} {self.op}] {msg}", flush=True)

    def where(self):
        return (f"seed={self.seed} epoch={self.epoch} round={self.round} op={self.op} "
                f"delay={self.delay * 1000:.1f}ms")

    def violation(self, msg):
        text = f"VIOLATION {self.where()}: {msg}"
        print(text, flush=True)
        self.violations.append(text)

    @contextlib.contextmanager
    def phase(self, name):
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.time_in[name] = self.time_in.get(name, 0.0) + time.monotonic() - t0

    # -- data shared by all epochs --------------------------------------------

    def make_lab_data(self):
        """4,000 small files, and three label files of 1,000,000 rows each."""
        self.lab_dir = self.work / "lab"
        if not self.lab_dir.exists():
            for fi in range(LAB_DIRS * LAB_FILES):
                p = self.lab_dir / lab_path(fi)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(f"file {fi}\n")
        self.lab_files = {}
        for v in (1, 2, 3):
            path = self.work / f"labels-{v}.csv"
            if not path.exists():
                with open(path, "w") as f:
                    f.write("path,key,value\n")
                    for fi in range(LAB_DIRS * LAB_FILES):
                        p = lab_path(fi)
                        f.write("".join(f"{p},k{k},{lab_value(v, fi, k)}\n" for k in range(LAB_KEYS)))
            self.lab_files[v] = path

    # -- the model ------------------------------------------------------------

    def reset_model(self):
        # (repo, name) -> commit id; kinds: branch, tag, env
        self.refs = {}
        self.kind = {}
        # commit id -> ("d", manifest) | ("lab", variant or None)
        self.contents = {}
        self.parents = {}

    def set_ref(self, repo, name, kind, cid):
        self.refs[(repo, name)] = cid
        self.kind[(repo, name)] = kind

    # -- timing -----------------------------------------------------------------

    def T(self, op):
        """The kill window of op: the median duration of its last full runs."""
        d = self.durations[op][-7:]
        return statistics.median(d) if d else 2.0

    def measured(self, op, seconds):
        self.durations[op].append(seconds)

    def timed_run(self, op, *args):
        t0 = time.monotonic()
        p = self.a.run(*args)
        self.measured(op, time.monotonic() - t0)
        return p

    def kill_after(self, args, delay, read_at_least=None):
        """Start artifs ARGS, SIGKILL it after delay seconds; (killed, rc, elapsed, stdout, stderr).

        read_at_least: kill once the process has read that many bytes
        (/proc/PID/io rchar) instead, if /proc tells; the delay is then a fallback."""
        t0 = time.monotonic()
        p = self.a.popen(*args)
        if read_at_least is not None and os.path.exists(f"/proc/{p.pid}/io"):
            delay = 10 * self.T("gc-prep") + 5
            while p.poll() is None and time.monotonic() - t0 < delay:
                try:
                    with open(f"/proc/{p.pid}/io") as f:
                        rchar = int(next(l for l in f if l.startswith("rchar:")).split()[1])
                except (OSError, StopIteration, ValueError):
                    break
                if rchar >= read_at_least:
                    break
                time.sleep(0.001)
            delay = 0
        left = delay - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        out, err = p.communicate()
        elapsed = time.monotonic() - t0
        killed = p.returncode == -signal.SIGKILL
        return killed, p.returncode, elapsed, out, err

    # -- epoch setup ------------------------------------------------------------

    def setup_epoch(self):
        self.op = "setup"
        self.reset_model()
        ew = self.work / f"epoch-{self.epoch}"
        shutil.rmtree(ew, ignore_errors=True)
        ew.mkdir(parents=True)
        self.ew = ew
        self.a = Artifs(self.args.bin, ew / "store", self.env, self.args.timeout)
        rng = random.Random(f"{self.seed}:{self.epoch}:setup")
        a = self.a
        a.run("init")
        a.run("create", "dataset", "d")
        a.run("create", "dataset", "lab")
        if self.src is None:
            self.src = Source(self.work / "src", rng)
        c0 = a.run("commit", REPO, self.src.root, "-m", "base").stdout.decode().strip()
        self.contents[c0] = ("d", dict(self.src.manifest))
        self.parents[c0] = None
        self.set_ref(REPO, "main", "branch", c0)
        for b in ("arc", "scratch"):
            a.run("branch", REPO, b, "main")
            self.set_ref(REPO, b, "branch", c0)
        l0 = a.run("commit", LAB, self.lab_dir, "-m", "lab").stdout.decode().strip()
        self.contents[l0] = ("lab", None)
        self.parents[l0] = None
        self.set_ref(LAB, "main", "branch", l0)
        if self.epoch > 1:
            return
        # the first epoch measures every operation once, run to the end
        # each commit op twice: the big file new (two batches) and edited (some MiB)
        for variant in ("new", "edit"):
            m = self.src.mutate(rng, new=variant == "new")
            old = self.refs[(REPO, "main")]
            c = self.timed_run(f"commit-dir/{variant}", "commit", REPO, self.src.root,
                               "-m", f"second {variant}").stdout.decode().strip()
            self.contents[c] = ("d", m)
            self.parents[c] = old
            self.set_ref(REPO, "main", "branch", c)
            c1 = c
        for variant in ("new", "edit"):
            m = self.src.mutate(rng, new=variant == "new")
            tar = self.make_tar()
            old = self.refs[(REPO, "arc")]
            c = self.timed_run(f"commit-archive/{variant}", "commit", f"{REPO}@arc", tar,
                               "-m", f"archive {variant}").stdout.decode().strip()
            self.contents[c] = ("d", m)
            self.parents[c] = old
            self.set_ref(REPO, "arc", "branch", c)

        l1 = self.timed_run("label-import", "label", "import", LAB, self.lab_files[1], "-m", "labels 1") \
            .stdout.decode().strip()
        self.contents[l1] = ("lab", 1)
        self.parents[l1] = l0
        self.set_ref(LAB, "main", "branch", l1)

        self.timed_run("tag", "tag", REPO, "t0", "main")
        self.set_ref(REPO, "t0", "tag", c1)
        self.timed_run("promote", "promote", REPO, "t0", "dev", "-m", "first")
        self.set_ref(REPO, "dev", "env", c1)

        # a commit of fresh data killed after its first batch leaves garbage:
        # gc's time is measured on that
        self.gc_prep(rng, count=False)
        self.timed_run("gc", "gc")
        self.log("T: " + ", ".join(f"{op}={self.T(op) * 1000:.0f}ms" for op in self.durations))

    def make_tar(self):
        tar = self.ew / "tree.tar"
        subprocess.run(["tar", "-cf", str(tar), "-C", str(self.src.root), "."], check=True)
        return tar

    def write_junk(self, rng):
        junk = self.ew / "junk"
        shutil.rmtree(junk, ignore_errors=True)
        junk.mkdir()
        write_stream(junk / "junk.bin", rng, JUNK)
        return junk

    # -- checks -------------------------------------------------------------------

    def actual_refs(self, everything=False, only=None):
        """{(repo, name): (kind, commit)} as the CLI lists them.

        Only datasets/lab's branches unless everything (no operation makes a
        tag or environment there); only=(repo, kind): just that listing."""
        out = {}
        for repo in (REPO, LAB):
            for kind, args in (("branch", ("branch", repo, "--list")),
                               ("tag", ("tag", repo, "--list")),
                               ("env", ("envs", repo))):
                if only and only != (repo, kind):
                    continue
                if repo == LAB and kind != "branch" and not everything:
                    continue
                for r in self.a.json(*args):
                    out[(repo, r["name"])] = (kind, r["commit"])
        return out

    def check_fsck(self):
        p = self.a.run("fsck", "--json", ok=False)
        try:
            j = json.loads(p.stdout)
        except ValueError:
            raise Violation(f"fsck --json: exit {p.returncode}, not JSON: {p.stdout[:500]!r} "
                            f"{p.stderr[:1000]!r}")
        if p.returncode != 0 or j.get("ok") is not True or j.get("faults"):
            raise Violation(f"fsck: exit {p.returncode}: {json.dumps(j)[:3000]}")

    def adopt_new(self, repo, name, cid, pending):
        """The interrupted op's ref moved to cid: it must be the op's new commit."""
        kind, old, new, content = pending
        if new is not None:
            if cid != new:
                raise Violation(f"{repo}@{name} is at {cid}; expected old {old} or new {new}")
            return
        # a commit-like op: parent must be the old head and content the round's
        show = self.a.json("show", f"{repo}@{cid}")
        if show["parents"] != ([old] if old else []):
            raise Violation(f"{repo}@{name} moved to {cid} whose parents are {show['parents']}, "
                            f"not the old head {old}")
        self.contents[cid] = content
        self.parents[cid] = old
        self.verify(repo, cid)
        pending[2] = cid

    def check_refs(self, pending_ref=None, pending=None, everything=False):
        """Every ref as the model says; the pending ref (repo, name) at old or new."""
        actual = self.actual_refs(everything)
        expected = dict(self.refs)
        for key in set(actual) | set(expected):
            akind, acid = actual.get(key, (None, None))
            ecid = expected.get(key)
            if key == pending_ref:
                _, old, new, _ = pending
                if acid == old:
                    continue
                if acid is None:
                    raise Violation(f"ref {key[0]}@{key[1]} disappeared (old {old}, new {new})")
                self.adopt_new(key[0], key[1], acid, pending)
                continue
            if acid != ecid:
                raise Violation(f"ref {key[0]}@{key[1]} is at {acid}, expected {ecid} (unchanged)")
            if akind != self.kind.get(key):
                raise Violation(f"ref {key[0]}@{key[1]} is a {akind}, expected {self.kind.get(key)}")
        return actual

    def check_logs(self, actual, branches=None, repos=(REPO, LAB)):
        """Every commit named by a log or the ref log is known; ref-log chains are whole."""
        named = {REPO: set(), LAB: set()}
        for repo in repos:
            hist = self.a.json("history", repo, "--all")
            per_ref = {}
            for h in hist:
                # the entry of 'create' says the branch went to the zero id (an empty branch)
                for k in ("from", "to"):
                    if h[k] == ZERO:
                        h[k] = None
                per_ref.setdefault(h["ref"], []).append(h)
                for c in (h["from"], h["to"]):
                    if c:
                        named[repo].add(c)
            for ref, hs in per_ref.items():
                hs.sort(key=lambda h: h["seq"])
                prev = None
                for h in hs:
                    if h["from"] != prev:
                        raise Violation(f"history of {repo}@{ref}: seq {h['seq']} moves from "
                                        f"{h['from']}, but the previous entry went to {prev}")
                    prev = h["to"]
                cur = actual.get((repo, ref), (None, None))[1]
                if prev != cur:
                    raise Violation(f"history of {repo}@{ref} ends at {prev}, the ref is at {cur}")
            for (r, name), (kind, cid) in actual.items():
                if r != repo:
                    continue
                named[repo].add(cid)
                if kind == "branch" and (branches is None or (repo, name) in branches):
                    ids = [c["id"] for c in self.a.json("log", f"{repo}@{name}")]
                    named[repo].update(ids)
                    # the first-parent chain is the one the model knows
                    for x, y in zip(ids, ids[1:]):
                        if x in self.parents and self.parents[x] != y:
                            raise Violation(f"log {repo}@{name}: parent of {x} is {y}, "
                                            f"expected {self.parents[x]}")
        for repo, ids in named.items():
            unknown = [c for c in ids if c not in self.contents]
            if unknown:
                raise Violation(f"{repo}: commits named by refs/logs that no completed operation "
                                f"made: {unknown[:5]}")
        return named

    def verify(self, repo, cid, full=False, rng=None, nfiles=3):
        """The version reads back as the harness committed it."""
        kind, content = self.contents[cid]
        rng = rng or random.Random(cid)
        if kind == "lab":
            for fi in rng.sample(range(LAB_DIRS * LAB_FILES), nfiles if not full else 10):
                got = self.a.json("label", "show", f"{repo}@{cid}:{lab_path(fi)}")["labels"]
                want = {} if content is None else {f"k{k}": lab_value(content, fi, k) for k in range(LAB_KEYS)}
                if got != want:
                    diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))[:5]
                    raise Violation(f"{repo}@{cid}:{lab_path(fi)}: labels differ (keys {diff}, "
                                    f"e.g. {[(k, got.get(k), want.get(k)) for k in diff[:2]]})")
            fi = rng.randrange(LAB_DIRS * LAB_FILES)
            got = self.a.run("cat", f"{repo}@{cid}:{lab_path(fi)}").stdout
            if got != f"file {fi}\n".encode():
                raise Violation(f"{repo}@{cid}:{lab_path(fi)} reads {got[:100]!r}")
            return
        manifest = content
        if full:
            self.full_checks += 1
            dest = self.ew / "checkout"
            shutil.rmtree(dest, ignore_errors=True)
            self.a.run("checkout", f"{repo}@{cid}", dest)
            got = walk_manifest(dest)
            shutil.rmtree(dest, ignore_errors=True)
            if got != manifest:
                diff = sorted(k for k in set(got) | set(manifest) if got.get(k) != manifest.get(k))
                raise Violation(f"checkout {repo}@{cid} differs from the committed tree at "
                                f"{len(diff)} paths: " + "; ".join(
                                    f"{k}: {got.get(k)} != {manifest.get(k)}" for k in diff[:4]))
            return
        ls = self.a.json("ls", "-r", "-l", f"{repo}@{cid}")
        listed = {}
        ids = {}
        for e in ls:
            if e["type"] == "file":
                listed[e["path"]] = ("file", e["size"], e["executable"])
                ids[e["path"]] = e["id"]
            else:
                listed[e["path"]] = (e["type"],)
        want = {k: (("file", v[2], v[3]) if v[0] == "file" else (v[0],)) for k, v in manifest.items()}
        if listed != want:
            diff = sorted(k for k in set(listed) | set(want) if listed.get(k) != want.get(k))
            raise Violation(f"ls {repo}@{cid} differs from the committed tree at {len(diff)} paths: "
                            + "; ".join(f"{k}: {listed.get(k)} != {want.get(k)}" for k in diff[:4]))
        # A file id whose bytes were read back once (cat, sha256) is known: fsck
        # proves every stored file still hashes to its id, so any file listed
        # with that id has those bytes.  Files with unknown ids: cat a sample.
        unknown = []
        for path, v in sorted(manifest.items()):
            if v[0] != "file":
                continue
            known = self.verified.get(ids[path])
            if known is None:
                unknown.append(path)
            elif known != v[1]:
                raise Violation(f"{repo}@{cid}:{path} has id {ids[path]}, whose bytes (read back "
                                f"earlier) have sha256 {known[:16]}..., not {v[1][:16]}...")
        small = [p for p in unknown if p not in ("big.bin", "junk.bin")]
        sample = rng.sample(small, min(nfiles, len(small)))
        sample += [p for p in unknown if p in ("big.bin", "junk.bin") and rng.random() < 0.5]
        for path in sample:
            data = self.a.run("cat", f"{repo}@{cid}:{path}").stdout
            if sha256_bytes(data) != manifest[path][1]:
                raise Violation(f"cat {repo}@{cid}:{path}: {len(data)} bytes, sha256 "
                                f"{sha256_bytes(data)[:16]}..., expected {manifest[path][2]} bytes "
                                f"{manifest[path][1][:16]}...")
            self.verified[ids[path]] = manifest[path][1]

    def check_all(self, rng, pending_ref=None, pending=None, light=False, full=False):
        """The checks after a kill (or a gc)."""
        self.check_fsck()
        actual = self.check_refs(pending_ref, pending)
        self.last_actual = actual
        # datasets/lab's ref log only when the round touched it (gc never writes refs)
        repos = (REPO, LAB) if pending_ref and pending_ref[0] == LAB else (REPO,)
        named = self.check_logs(actual, [pending_ref], repos)
        if light:
            return
        targets = []
        if pending_ref and actual.get(pending_ref, (None, None))[1]:
            targets.append((pending_ref[0], actual[pending_ref][1]))
        repo = rng.choice([r for r in repos for _ in range(2 if r == REPO else 1)])
        ids = sorted(named[repo])
        if ids:
            targets.append((repo, rng.choice(ids)))
        for repo, cid in targets:
            self.verify(repo, cid, rng=rng)
        if full:
            self.verify(REPO, rng.choice(sorted(named[REPO])), full=True)

    # -- rounds -------------------------------------------------------------------

    def resolve_spec(self, rng):
        """A REV for tag/promote: (spec as typed, commit id)."""
        choices = []
        for (repo, name), cid in sorted(self.refs.items()):
            if repo == REPO and cid:
                choices.append((name, cid))
        for cid in sorted(c for c, (k, _) in self.contents.items() if k == "d"):
            choices.append((cid[:rng.choice((8, 12, 32))], cid))
        return rng.choice(choices)

    def do_round(self, op, rng):
        frac = rng.random()
        prep_rng = random.Random(f"{self.seed}:{self.round}:data")
        with self.phase("prepare data"):
            args, ref, pending = self.prepare(op, prep_rng)
        # commits: timed apart for a new big file (two batches) and an edited one
        self.tkey = f"{op}/{'new' if self.src.new_big else 'edit'}" if op.startswith("commit") else op
        self.delay = frac * self.T(self.tkey)
        with self.phase("killed runs"):
            killed, rc, elapsed, out, err = self.kill_after(args, self.delay)
        with self.phase("checks"):
            self.after_kill(op, rng, args, ref, pending, killed, rc, elapsed, err)
        with self.phase("reruns"):
            self.rerun(op, rng, args, ref, pending, killed)

    def prepare(self, op, prep_rng):
        if op == "commit-dir":
            manifest = self.src.mutate(prep_rng)
            ref = (REPO, "main")
            args = ["commit", REPO, self.src.root, "-m", f"round {self.round}"]
            pending = ["commit", self.refs[ref], None, ("d", manifest)]
        elif op == "commit-archive":
            manifest = self.src.mutate(prep_rng)
            tar = self.make_tar()
            ref = (REPO, "arc")
            args = ["commit", f"{REPO}@arc", tar, "-m", f"round {self.round}"]
            pending = ["commit", self.refs[ref], None, ("d", manifest)]
        elif op == "label-import":
            cur = self.contents[self.refs[(LAB, "main")]][1]
            v = prep_rng.choice([x for x in (1, 2, 3) if x != cur])
            ref = (LAB, "main")
            args = ["label", "import", LAB, self.lab_files[v], "-m", f"round {self.round}"]
            pending = ["commit", self.refs[ref], None, ("lab", v)]
        elif op == "tag":
            spec, cid = self.resolve_spec(prep_rng)
            ref = (REPO, f"t{self.round}")
            self.kind[ref] = "tag"
            args = ["tag", REPO, ref[1], spec]
            pending = ["tag", None, cid, None]
        elif op == "promote":
            env = prep_rng.choice(ENVS)
            ref = (REPO, env)
            cur = self.refs.get(ref)
            for _ in range(10):
                spec, cid = self.resolve_spec(prep_rng)
                if cid != cur:
                    break
            self.kind[ref] = "env"
            args = ["promote", REPO, spec, env, "-m", f"round {self.round}"]
            pending = ["promote", cur, cid, None]
        elif op == "gc":
            self.gc_prep(prep_rng, count=True)
            ref = None
            args = ["gc"]
            pending = None
        else:
            raise AssertionError(op)
        return args, ref, pending

    def after_kill(self, op, rng, args, ref, pending, killed, rc, elapsed, err):
        self.log(f"delay {self.delay * 1000:.1f}ms of T={self.T(self.tkey) * 1000:.0f}ms: "
                 f"{'killed' if killed else f'exit {rc}'} after {elapsed * 1000:.1f}ms")
        if not killed:
            if rc != 0:
                raise Violation(f"artifs {' '.join(map(str, args))} exit {rc} without a kill: "
                                f"{err[:2000].decode('utf-8', 'replace')}")
            self.finished[op] += 1
            self.measured(self.tkey, elapsed)
        else:
            self.kills[op] += 1
            self.total_kills += 1

        # the checks, with the op's ref at old or new
        self.check_all(rng, ref, pending, full=killed and self.args.full_every > 0
                       and self.total_kills % self.args.full_every == 0)
        if killed and ref is not None:
            cur = self.last_actual.get(ref, (None, None))[1]
            if cur is not None and cur != pending[1]:
                self.moved[op] += 1
        if killed and op != "gc" and rng.random() < self.args.gc_rate:
            self.gc_after_kill += 1
            self.a.run("gc")
            self.check_all(rng, ref, pending, light=True)

    def rerun(self, op, rng, args, ref, pending, killed):
        """The interrupted operation run again: it succeeds, the ref at the new commit."""
        a = self.a
        if not killed:
            # it ran to the end: the ref must be at the new commit
            if ref is not None:
                cid = self.last_actual.get(ref, (None, None))[1]
                if pending[2] is None or cid != pending[2]:
                    raise Violation(f"artifs {' '.join(map(str, args))} exited 0 but "
                                    f"{ref[0]}@{ref[1]} is at {cid} (old {pending[1]})")
                self.set_ref(ref[0], ref[1], self.kind[ref], cid)
            return
        p = self.a.run(*args, ok=False)
        if p.returncode != 0:
            raise Violation(f"rerun of artifs {' '.join(map(str, args))} after the "
                            f"{'kill' if killed else 'completed run'}: exit {p.returncode}: "
                            f"{p.stderr[:2000].decode('utf-8', 'replace').strip()}")
        if op == "gc":
            j = a.json("gc", "--dry-run")
            if any(j["removed"].values()) or j["bytes_freed"]:
                raise Violation(f"after the rerun of gc, gc --dry-run still finds {j}")
            self.check_refs()
            return
        printed = p.stdout.decode().strip()
        actual = self.actual_refs(only=(ref[0], self.kind[ref]))
        cid = actual.get(ref, (None, None))[1]
        kind, old, new, content = pending
        if kind == "commit":
            if printed != cid:
                raise Violation(f"rerun printed {printed!r}, but {ref[0]}@{ref[1]} is at {cid}")
            if new is not None and cid != new:
                raise Violation(f"the killed run moved {ref[0]}@{ref[1]} to {new}, the rerun to {cid}")
            if new is None:
                if cid == old:
                    raise Violation(f"rerun left {ref[0]}@{ref[1]} at the old head {old}")
                show = a.json("show", f"{ref[0]}@{cid}")
                if show["parents"] != [old]:
                    raise Violation(f"rerun made {cid} with parents {show['parents']}, not [{old}]")
                self.contents[cid] = content
                self.parents[cid] = old
                self.verify(ref[0], cid, rng=rng, nfiles=1)
        elif cid != new:
            raise Violation(f"after the rerun {ref[0]}@{ref[1]} is at {cid}, expected {new}")
        self.set_ref(ref[0], ref[1], self.kind[ref], cid)

    def gc_prep(self, rng, count):
        """Kill a commit of 96 MiB of fresh data once it read 72 MiB: its first batch
        (64 MiB, committed before reading on) is then garbage."""
        junk = self.write_junk(rng)
        ref = (REPO, "scratch")
        pending = ["commit", self.refs[ref], None, ("d", walk_manifest(junk))]
        saved = self.delay
        try:
            self._gc_prep(rng, count, junk, ref, pending)
        finally:
            self.delay = saved

    def _gc_prep(self, rng, count, junk, ref, pending):
        self.delay = rng.uniform(0.7, 0.9) * self.T("gc-prep")
        killed, rc, elapsed, out, err = self.kill_after(
            ["commit", f"{REPO}@scratch", junk, "-m", "junk"], self.delay, read_at_least=72 * MiB)
        if not killed and rc != 0:
            raise Violation(f"gc prep commit: exit {rc}: {err[:2000].decode('utf-8', 'replace')}")
        if not killed:
            self.measured("gc-prep", elapsed)
            self.prep_finished += count
        if killed and count:
            self.kills["commit (gc prep)"] += 1
        self.check_fsck()
        self.check_refs(ref, pending)
        if pending[2]:
            self.set_ref(REPO, "scratch", "branch", pending[2])

    def end_epoch(self):
        """Every ref's version in full; gc; fsck."""
        self.op = "end of epoch"
        rng = random.Random(f"{self.seed}:{self.epoch}:end")
        self.check_fsck()
        actual = self.check_refs(everything=True)
        self.check_logs(actual)
        # the branches' heads in full (tags and environments point at commits
        # the rounds checked already)
        for key in ((REPO, "main"), (REPO, "arc"), (LAB, "main")):
            self.verify(key[0], actual[key][1], full=True, rng=rng)
        self.a.run("gc")
        self.check_fsck()
        j = self.a.json("gc", "--dry-run")
        if any(j["removed"].values()):
            raise Violation(f"gc --dry-run after gc finds {j}")

    # -- main loop -----------------------------------------------------------------

    def run(self):
        t_start = time.monotonic()
        names = list(OPS)
        weights = [OPS[n] for n in names]
        max_rounds = self.args.kills * 3 + 60
        self.epoch = 0
        self.src = None
        need_setup = True
        while self.total_kills < self.args.kills and self.round < max_rounds:
            if need_setup:
                self.epoch += 1
                try:
                    with self.phase("epoch setup"):
                        self.setup_epoch()
                except Violation as e:
                    self.violation(f"epoch setup: {e}")
                    break
                need_setup = False
                epoch_rounds = 0
            self.round += 1
            epoch_rounds += 1
            rng = random.Random(f"{self.seed}:{self.round}")
            self.op = rng.choices(names, weights)[0]
            self.delay = 0.0
            try:
                self.do_round(self.op, rng)
            except Violation as e:
                self.violation(str(e))
                self.keep_store()
                need_setup = True
                continue
            except subprocess.TimeoutExpired as e:
                self.violation(f"timed out: {e}")
                self.keep_store()
                need_setup = True
                continue
            if epoch_rounds >= self.args.epoch_rounds or self.total_kills >= self.args.kills:
                try:
                    with self.phase("epoch end"):
                        self.end_epoch()
                except Violation as e:
                    self.violation(str(e))
                    self.keep_store()
                if not self.args.keep:
                    shutil.rmtree(self.ew, ignore_errors=True)
                need_setup = True
        if self.total_kills < self.args.kills:
            self.op = "summary"
            self.violation(f"only {self.total_kills} kills in {self.round} rounds "
                           f"(wanted {self.args.kills})")
        self.summary(time.monotonic() - t_start)
        return 1 if self.violations else 0

    def keep_store(self):
        kept = self.work.parent / f"{self.work.name}-kept-epoch{self.epoch}-round{self.round}"
        if self.ew.exists() and not kept.exists():
            shutil.copytree(self.ew / "store", kept / "store", symlinks=True)
            print(f"  store kept in {kept}", flush=True)

    def summary(self, seconds):
        print(f"\ncrash harness: seed {self.seed}, {self.round} rounds in {self.epoch} epochs, "
              f"{seconds:.0f} s")
        print(f"{'operation':<20}{'kills':>7}{'moved':>7}{'finished':>10}{'T (ms)':>12}")
        for op in list(OPS) + ["commit (gc prep)"]:
            key = "gc-prep" if op == "commit (gc prep)" else op
            t = "/".join(f"{self.T(k) * 1000:.0f}" for k in self.durations if k.split("/")[0] == key)
            if key == "gc-prep":
                t = "(read 72M)"
            fin = self.finished.get(op, self.prep_finished)
            print(f"{op:<20}{self.kills[op]:>7}{self.moved.get(op, ''):>7}{fin:>10}{t:>12}")
        print(f"{'total':<20}{self.total_kills:>7}   (plus {self.kills['commit (gc prep)']} "
              f"gc-prep kills)")
        print("moved: kills that landed after the ref had moved (the new commit was checked);\n"
              "finished: rounds where the operation ended before its kill (checked the same way);\n"
              "T: the kill window, the median duration (commits: big file new/edited)")
        print(f"gc runs after a kill: {self.gc_after_kill}; full checkouts compared: {self.full_checks}")
        print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.time_in.items()))
        if self.args.verbose:
            print("artifs commands (count, seconds): " + ", ".join(
                f"{k} {n} {t:.1f}s" for k, (n, t) in sorted(Artifs.stats.items(), key=lambda x: -x[1][1])))
        if self.violations:
            print(f"\n{len(self.violations)} VIOLATION(S):")
            for v in self.violations:
                print("  " + v)
            print(f"reproduce: {sys.argv[0]} --seed {self.seed} --kills {self.args.kills} --keep -v")
        else:
            print("no violations")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (head of this file) for details.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kills", type=int, default=200, help="SIGKILLs to land (default 200)")
    ap.add_argument("--bin", default=os.environ.get("ARTIFS_BIN"),
                    help="the artifs binary (default $ARTIFS_BIN)")
    ap.add_argument("--workdir", help="where stores and data go (default: a new temp dir)")
    ap.add_argument("--epoch-rounds", type=int, default=20, help="rounds per fresh store")
    ap.add_argument("--full-every", type=int, default=16,
                    help="a full checkout comparison every N kills (0: only at epoch ends)")
    ap.add_argument("--gc-rate", type=float, default=0.2,
                    help="probability of a full gc between a kill and its rerun")
    ap.add_argument("--timeout", type=float, default=300, help="per artifs command, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if not args.bin or not os.access(args.bin, os.X_OK):
        ap.error("set ARTIFS_BIN or --bin to the artifs binary")
    args.bin = os.path.abspath(args.bin)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        args.workdir = os.path.abspath(args.workdir)
        args.workdir = tempfile.mkdtemp(prefix="crash-", dir=args.workdir)
    else:
        args.workdir = tempfile.mkdtemp(prefix="artifs-crash-")
    try:
        rc = Harness(args).run()
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
