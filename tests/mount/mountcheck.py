"""Helpers shared by the mount tests and by the reader processes they start.

Run as a script, this is one reader process of the concurrency test:

    python3 mountcheck.py SPEC.json STOPFILE MODE

SPEC.json holds the expected content of every version (see `manifest`);
the reader verifies versions in a loop until STOPFILE exists, does one more
full round, and prints its counters as one JSON line on stdout.
"""

import errno
import hashlib
import json
import os
import sys
import time

CHUNK = 1 << 20


def sha256_file(path, dir_fd=None, drop=False):
    """
    sha256 hex of a file's bytes (opened relative to dir_fd when given).
    drop: evict the file's pages afterwards, so the next read asks the daemon
    again instead of the page cache.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        h = hashlib.sha256()
        while True:
            b = os.read(fd, CHUNK)
            if not b:
                break
            h.update(b)
        if drop:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return h.hexdigest()
    finally:
        os.close(fd)


def manifest(root):
    """{relpath: sha256} of the regular files under root, and the set of dirs."""
    files, dirs = {}, set()
    root = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            p = os.path.normpath(os.path.join(rel, d))
            if os.path.islink(os.path.join(dirpath, d)):
                continue
            dirs.add(p)
        for f in filenames:
            full = os.path.join(dirpath, f)
            if os.path.islink(full):
                continue
            files[os.path.normpath(os.path.join(rel, f))] = sha256_file(full)
    return files, dirs


class Counters:
    def __init__(self):
        self.passes = {}        # what -> completed verified passes
        self.files = 0          # files read and verified
        self.mismatches = []    # wrong bytes or wrong listings (never acceptable)
        self.errors = []        # unexpected errors
        self.enoent_main = []   # ENOENT under main/ while it moved (tolerated, reported)
        self.seen = set()       # versions of main seen by snapshot passes

    def as_dict(self):
        return {"passes": self.passes, "files": self.files,
                "mismatches": self.mismatches[:50], "nmismatches": len(self.mismatches),
                "errors": self.errors[:50], "nerrors": len(self.errors),
                "enoent_main": self.enoent_main[:50], "nenoent_main": len(self.enoent_main),
                "seen": sorted(self.seen)}

    def add(self, other):
        """Merge the counters of a reader process (as_dict() output)."""
        for k, v in other["passes"].items():
            self.passes[k] = self.passes.get(k, 0) + v
        self.files += other["files"]
        self.mismatches += other["mismatches"]
        self.mismatches += ["..."] * (other["nmismatches"] - len(other["mismatches"]))
        self.errors += other["errors"]
        self.errors += ["..."] * (other["nerrors"] - len(other["errors"]))
        self.enoent_main += other["enoent_main"]
        self.enoent_main += ["..."] * (other["nenoent_main"] - len(other["enoent_main"]))
        self.seen |= set(other["seen"])

    def done(self, what):
        self.passes[what] = self.passes.get(what, 0) + 1


def snapshot_pass(top, spec, what, c, fixed_version=None):
    """
    Walk `top` with os.fwalk: every directory is opened relative to its parent's
    descriptor, so one pass sees exactly one version even while a branch moves
    (the open root keeps the version it resolved to).  The pass must equal a
    committed version exactly: the file named VERSION says which.
    """
    got, dirs = {}, set()
    version = None
    walked = False
    try:
        for dirpath, dirnames, filenames, dfd in os.fwalk(top):
            walked = True
            rel = os.path.relpath(dirpath, top)
            if rel == "." and version is None:
                fd = os.open("VERSION", os.O_RDONLY, dir_fd=dfd)
                try:
                    version = os.read(fd, 100).decode().strip()
                finally:
                    os.close(fd)
            for d in dirnames:
                dirs.add(os.path.normpath(os.path.join(rel, d)))
            for f in filenames:
                got[os.path.normpath(os.path.join(rel, f))] = sha256_file(f, dir_fd=dfd, drop=True)
                c.files += 1
    except OSError as e:
        if e.errno == errno.ENOENT and what == "main":
            c.enoent_main.append(f"{what}: {e}")
        else:
            c.errors.append(f"{what} (snapshot): {type(e).__name__}: {e}")
        return
    if not walked and what == "main":
        # fwalk yields nothing when top's lstat and its open name two
        # directories: main moved between them (a version's root is its own
        # directory), like the ENOENT above
        c.enoent_main.append(f"{what}: moved between lstat and open")
        return
    if fixed_version is not None and version != fixed_version:
        c.mismatches.append(f"{what}: VERSION is {version!r}, wanted {fixed_version!r}")
        return
    exp = spec["versions"].get(version)
    if exp is None:
        c.mismatches.append(f"{what}: VERSION {version!r} is no committed version")
        return
    if set(got) != set(exp["files"]):
        c.mismatches.append(f"{what}@{version}: file set differs: missing "
                            f"{sorted(set(exp['files']) - set(got))[:5]}, extra "
                            f"{sorted(set(got) - set(exp['files']))[:5]}")
    if dirs != set(exp["dirs"]):
        c.mismatches.append(f"{what}@{version}: directory set differs")
    for p, h in got.items():
        if p in exp["files"] and exp["files"][p] != h:
            c.mismatches.append(f"{what}@{version}: {p}: sha256 {h}, wanted {exp['files'][p]}")
    if what == "main":
        c.seen.add(version)
    c.done(what + ":snapshot")


def path_pass(top, spec, what, c, fixed_version=None):
    """
    Read the files present in every version by full path (each open resolves
    the branch anew): every file must hold the bytes it has in some committed
    version (the given one for a tag).
    """
    for p in spec["stable"]:
        try:
            h = sha256_file(os.path.join(top, p), drop=True)
        except OSError as e:
            if e.errno == errno.ENOENT and what == "main":
                c.enoent_main.append(f"{what}/{p}: {e}")
            else:
                c.errors.append(f"{what}/{p} (path): {type(e).__name__}: {e}")
            continue
        c.files += 1
        if fixed_version is not None:
            ok = spec["versions"][fixed_version]["files"].get(p) == h
        else:
            ok = h in spec["allowed"][p]
        if not ok:
            c.mismatches.append(f"{what}/{p}: sha256 {h} is in no committed version")
    c.done(what + ":path")


def reader_round(mnt_repo, spec, mode, c):
    """One verification of the tag and of main."""
    passer = snapshot_pass if mode == "snapshot" else path_pass
    passer(os.path.join(mnt_repo, spec["tag"]), spec, spec["tag"], c,
           fixed_version=spec["tag_version"])
    passer(os.path.join(mnt_repo, "main"), spec, "main", c)


def reader_loop(mnt_repo, spec, mode, stop, c, deadline):
    """Verify until stop() is true, then once more (the final state)."""
    while not stop() and time.monotonic() < deadline:
        reader_round(mnt_repo, spec, mode, c)
    reader_round(mnt_repo, spec, mode, c)


def _main(argv):
    spec_path, stop_file, mode = argv[1], argv[2], argv[3]
    with open(spec_path) as f:
        spec = json.load(f)
    c = Counters()
    deadline = time.monotonic() + float(spec.get("max_seconds", 600))
    try:
        reader_loop(spec["mnt_repo"], spec, mode, lambda: os.path.exists(stop_file), c, deadline)
    except Exception as e:  # noqa: BLE001 - reported, never swallowed
        c.errors.append(f"reader process crashed: {type(e).__name__}: {e}")
    sys.stdout.write(json.dumps(c.as_dict()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
