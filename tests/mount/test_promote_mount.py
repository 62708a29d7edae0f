"""Environments in the FUSE mount: MOUNT/KIND/NAME/ENV/ follows promote and
rollback within a few seconds, while a file opened before the move keeps
reading the version it was opened on.

Every mount is made with the conftest `mounter` fixture (through `mounted`),
which unmounts it and reaps its daemon whatever the test did.
"""

import os
import random
import time
from pathlib import Path

from mountutil import wait_for

MiB = 1 << 20
LIVE_WAIT = 5.0     # poll this long for a promotion to show
SHOULD_TAKE = 2.0   # what the README promises (about a second); reported, checked loosely
REPO = "models/clf"


def write_version(root, n, weights):
    root = Path(root)
    root.mkdir(parents=True)
    (root / "weights.bin").write_bytes(weights)
    (root / "version.txt").write_text(f"{n}\n")
    (root / "config").mkdir()
    (root / "config" / f"v{n}.json").write_text(f'{{"version": {n}}}\n')
    return root


def listing(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def shows(path, want):
    try:
        return Path(path).read_bytes() == want
    except OSError:
        return False


def promote(store, rev, env):
    p = store.run("promote", REPO, rev, env)
    return p.stdout.decode().strip()


def test_environment_follows_promotions_open_files_keep_their_version(store, mounted, tmp_path):
    rnd = random.Random(42)
    w1 = rnd.randbytes(6 * MiB + 123)
    w2 = rnd.randbytes(5 * MiB + 7)
    w3 = rnd.randbytes(3 * MiB)
    store.create("model", "clf")
    v1 = write_version(tmp_path / "v1", 1, w1)
    v2 = write_version(tmp_path / "v2", 2, w2)
    v3 = write_version(tmp_path / "v3", 3, w3)
    c1 = store.commit(REPO, v1, "v1")
    c2 = store.commit(REPO, v2, "v2")
    c3 = store.commit(REPO, v3, "v3")
    assert promote(store, c1, "production") == c1

    repo_dir = mounted.path / REPO
    prod = repo_dir / "production"
    assert wait_for(lambda: "production" in os.listdir(repo_dir), LIVE_WAIT), os.listdir(repo_dir)
    assert wait_for(lambda: shows(prod / "version.txt", b"1\n"), LIVE_WAIT)
    assert listing(prod) == listing(v1)
    assert (prod / "weights.bin").read_bytes() == w1
    assert os.stat(prod / "weights.bin").st_size == len(w1)

    # open the old version (nothing read yet), then move production
    fd = os.open(prod / "weights.bin", os.O_RDONLY)
    fd_cfg = os.open(prod / "config", os.O_RDONLY | os.O_DIRECTORY)
    try:
        t0 = time.monotonic()
        assert promote(store, c2, "production") == c2
        ok = wait_for(lambda: shows(prod / "version.txt", b"2\n"), LIVE_WAIT, 0.01)
        took = time.monotonic() - t0
        assert ok, f"production/ still shows version 1 {LIVE_WAIT} s after the promotion"
        print(f"production/ showed the promotion after {took:.3f} s")
        assert took <= SHOULD_TAKE + 1.0, f"the promotion took {took:.2f} s to show"
        assert wait_for(lambda: listing(prod) == listing(v2), LIVE_WAIT), listing(prod)
        assert (prod / "weights.bin").read_bytes() == w2
        assert os.stat(prod / "weights.bin").st_size == len(w2)

        # the descriptor opened before the move reads version 1 to its end
        chunks, off = [], 0
        while True:
            b = os.pread(fd, 1 << 17, off)
            if not b:
                break
            chunks.append(b)
            off += len(b)
        got = b"".join(chunks)
        assert len(got) == len(w1) and got == w1, f"read {len(got)} bytes, wanted {len(w1)} of version 1"
        assert os.fstat(fd).st_size == len(w1)
        assert os.listdir(fd_cfg) == ["v1.json"]
    finally:
        os.close(fd)
        os.close(fd_cfg)

    # other refs are untouched; a new environment appears; rollback is followed too
    assert (repo_dir / "main" / "version.txt").read_bytes() == b"3\n"
    promote(store, c3, "staging")
    assert wait_for(lambda: shows(repo_dir / "staging" / "version.txt", b"3\n"), LIVE_WAIT)
    assert {"main", "production", "staging"} <= set(os.listdir(repo_dir))
    store.run("rollback", REPO, "production")
    assert wait_for(lambda: shows(prod / "version.txt", b"1\n"), LIVE_WAIT), \
        "production/ did not follow the rollback"
    assert wait_for(lambda: listing(prod) == listing(v1), LIVE_WAIT)
    assert (prod / "weights.bin").read_bytes() == w1
    # the mount is read-only under environments as everywhere
    try:
        with open(prod / "version.txt", "w") as f:
            f.write("x")
        assert False, "wrote into production/"
    except OSError:
        pass
    assert (prod / "version.txt").read_bytes() == b"1\n"
