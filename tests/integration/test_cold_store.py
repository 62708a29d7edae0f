"""Reading from a store, or a source, that is not in memory.

The store's map has no read-ahead, so a value read through it cold arrives
one 4 KiB page fault at a time: a `cat` of a 512 MiB file took 7.1 s cold
against 0.11 s warm.  The CLI reads every stretch it will use in one
request first.  These tests evict the store's file from the page cache and
count the command's major page faults (each is one synchronous 4 KiB read
from disk): a fault per page of the data would be thousands; reading it in
large requests leaves only the B-tree pages of the look-ups.
"""

import os
import random
import shutil
import subprocess

from clihelpers import MiB, assert_no_sanitizer_report, write_random

SIZE = 32 * MiB
PAGES = SIZE // 4096
MAX_FAULTS = PAGES // 8     # a fault a page: 8,192; large reads: a few dozen


def evict(store):
    """Drop data.mdb's pages from the page cache (written back first)."""
    os.sync()
    fd = os.open(store / "data.mdb", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_faults(cli, *args, stdout=subprocess.DEVNULL):
    """Run an artifs command; its exit status must be 0.  Returns its major page faults."""
    p = subprocess.Popen([str(cli.bin), "--store", str(cli.store)] + [str(a) for a in args],
                         env=cli.env, stdout=stdout, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, f"artifs {args}: exit {p.returncode}: {err[:2000]!r}"
    assert_no_sanitizer_report(err)
    return ru.ru_majflt


def test_cold_store_read_in_large_requests(cli, tmp_path):
    cli.create("models/m")
    src = tmp_path / "v1"
    digest = write_random(src / "model.bin", 7, SIZE)
    cli.commit("models/m", src, "v1")

    # cat
    evict(cli.store)
    out = tmp_path / "out.bin"
    with open(out, "wb") as f:
        faults = run_faults(cli, "cat", "models/m@main:model.bin", stdout=f)
    assert write_random(tmp_path / "again.bin", 7, SIZE) == digest
    assert out.read_bytes() == (tmp_path / "again.bin").read_bytes()
    assert faults < MAX_FAULTS, f"cat: {faults} major faults for {PAGES} pages"

    # checkout
    evict(cli.store)
    faults = run_faults(cli, "checkout", "models/m@main", tmp_path / "co")
    assert (tmp_path / "co" / "model.bin").read_bytes() == out.read_bytes()
    assert faults < MAX_FAULTS, f"checkout: {faults} major faults for {PAGES} pages"

    # fsck reads and hashes every chunk
    evict(cli.store)
    faults = run_faults(cli, "fsck")
    assert faults < MAX_FAULTS, f"fsck: {faults} major faults for {PAGES} pages"

    # a commit whose chunks are all stored: every dedupe hit is compared
    # byte for byte with the stored copy, which must be read too
    cli.run("branch", "models/m", "again", "main")
    copy = tmp_path / "v1copy"
    shutil.copytree(src, copy)
    evict(cli.store)
    faults = run_faults(cli, "commit", "models/m@again", copy, "-m", "same bytes")
    assert faults < MAX_FAULTS, f"commit: {faults} major faults for {PAGES} pages"
    du = cli.du("models/m")
    assert du["stored_bytes"] < SIZE + MiB, du

    # export (archives read chunks the same way)
    evict(cli.store)
    faults = run_faults(cli, "export", "models/m@again", "-o", tmp_path / "m.tar")
    assert faults < MAX_FAULTS, f"export: {faults} major faults for {PAGES} pages"
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "m.tar")], check=True,
                             capture_output=True, text=True).stdout
    assert "model.bin" in listing and str(SIZE) in listing


def test_cold_push_reads_in_large_requests(cli, tmp_path):
    cli.create("models/m")
    src = tmp_path / "v1"
    write_random(src / "model.bin", 8, SIZE)
    cli.commit("models/m", src, "v1")
    cli.run("remote", "add", "origin", (tmp_path / "remote").as_uri())
    evict(cli.store)
    faults = run_faults(cli, "push", "origin", "models/m")
    assert faults < MAX_FAULTS, f"push: {faults} major faults for {PAGES} pages"
    clone = tmp_path / "clone"
    cli.run("clone", (tmp_path / "remote").as_uri(), clone, store=False)
    p = cli.run("--store", clone, "cat", "models/m@main:model.bin", store=False)
    assert p.stdout == (src / "model.bin").read_bytes()


def drop_source(root):
    """Drop every regular file under root from the page cache."""
    os.sync()
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def test_commit_of_a_cold_source(cli, tmp_path):
    """A source not in memory is read ahead, small files only; a FIFO, a link
    and an empty file among them are left alone, and the commit is the one a
    source in memory gives."""
    src = tmp_path / "src"
    rnd = random.Random(3)
    for d in range(3):
        for i in range(150):
            p = src / f"d{d}" / f"f{i:04d}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(rnd.randbytes(rnd.randrange(1, 64 << 10)))
    write_random(src / "d1" / "big.bin", 4, 3 * MiB)
    (src / "d1" / "empty").write_bytes(b"")
    os.mkfifo(src / "d1" / "f0100.fifo")
    os.symlink("f0001.bin", src / "d1" / "f0100.link")
    for repo in ("datasets/warm", "datasets/cold"):
        cli.create(repo)
    cli.commit("datasets/warm", src, "in memory")
    drop_source(src)
    p = cli.run("commit", "datasets/cold", src, "-m", "from disk", timeout=120)
    assert b"FIFO" in p.stderr, p.stderr
    warm = cli.json("show", "datasets/warm")
    cold = cli.json("show", "datasets/cold")
    assert warm["tree"] == cold["tree"]
    cli.run("checkout", "datasets/cold@main", tmp_path / "co")
    for d in range(3):
        for i in range(150):
            rel = f"d{d}/f{i:04d}.bin"
            assert (tmp_path / "co" / rel).read_bytes() == (src / rel).read_bytes(), rel
