"""Killed commits, damaged stores, and gc."""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from clihelpers import MiB, assert_same_tree, make_small_tree, rand_bytes, write_random

DATA_MDB = "data.mdb"


def start_commit(cli, spec, path, msg):
    return subprocess.Popen([cli.bin, "--store", str(cli.store), "commit", spec, str(path), "-m", msg],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env)


def kill(p):
    """SIGKILL p if it still runs; True if the kill is what ended it."""
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)  # it may still exit on its own first
    out, err = p.communicate()
    return p.returncode == -signal.SIGKILL, out, err


def log_ids(cli, spec):
    return [c["id"] for c in cli.json("log", spec)]


def assert_fsck_clean(cli):
    r = cli.json("fsck")
    assert r["ok"] is True and r["faults"] == [], r
    p = cli.run("fsck")
    assert b"fsck ok" in p.stderr and p.stdout == b""
    return r


def gc(cli, dry):
    r = cli.json("gc", *(["--dry-run"] if dry else []))
    assert list(r) == ["dry_run", "removed", "bytes_freed", "kept"]
    assert r["dry_run"] is dry
    assert set(r["removed"]) == {"chunks", "blobs", "trees", "commits", "labelsets"}
    return r


def nothing_to_collect(r):
    return all(v == 0 for v in r["removed"].values()) and r["bytes_freed"] == 0


@pytest.fixture
def killable(cli, tmp_path, big_file):
    """A directory of ~350 MiB (big files plus 3,000 small ones) and a base commit of part of it."""
    src = tmp_path / "src"
    make_small_tree(src / "m-small", seed=8, ndirs=30, per_dir=100)
    write_random(src / "keep" / "shared.bin", 81, 3 * MiB)
    cli.create("datasets/k")
    base = cli.commit("datasets/k", src, "base")
    cli.run("tag", "datasets/k", "base")
    cli.run("branch", "datasets/k", "side")
    # now the large part that the killed commits try to add
    os.link(big_file[0], src / "a-big.bin")
    write_random(src / "z-big" / "one.bin", 82, 48 * MiB)
    write_random(src / "z-big" / "two.bin", 83, 48 * MiB)
    return cli, src, base


def test_killed_commit_leaves_refs_and_store_intact(killable, tmp_path):
    cli, src, base = killable
    store_mdb = cli.store / DATA_MDB
    du0 = cli.du()

    # 1. kill once ~150 MiB reached the file: whole batches (64 MiB each) are
    # committed, their objects unreachable; ~200 MiB are still to go
    size0 = os.path.getsize(store_mdb)
    p = start_commit(cli, "datasets/k", src, "killed after some batches")
    deadline = time.monotonic() + 300
    while p.poll() is None and os.path.getsize(store_mdb) < size0 + 150 * MiB:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    killed, out, err = kill(p)
    assert killed, f"the commit finished before a batch was seen: {err!r}"
    assert out == b""
    assert log_ids(cli, "datasets/k") == [base]
    assert log_ids(cli, "datasets/k@side") == [base]
    assert_fsck_clean(cli)
    assert cli.du() == dict(du0, store_file_bytes=cli.du()["store_file_bytes"])

    # gc --dry-run reports the orphans and deletes nothing; gc deletes exactly them
    dry = gc(cli, True)
    assert dry["removed"]["chunks"] > 0 and dry["bytes_freed"] >= 64 * MiB, dry
    assert dry["removed"]["commits"] == 0
    assert gc(cli, True) == dry
    real = gc(cli, False)
    assert real["removed"] == dry["removed"] and real["bytes_freed"] == dry["bytes_freed"]
    assert real["kept"] == dry["kept"]
    assert nothing_to_collect(gc(cli, True))
    assert_fsck_clean(cli)
    out1 = tmp_path / "base-after-gc"
    cli.run("checkout", "datasets/k@base", out1)
    assert_same_tree(src, out1, skip={b"a-big.bin", b"z-big", b"z-big/one.bin", b"z-big/two.bin"})

    # 2. kill after a range of delays; every time the branch stays and the store checks
    killed_any = 0
    for delay in (0.05, 0.1, 0.2, 0.3, 0.5):
        p = start_commit(cli, "datasets/k", src, f"killed after {delay}s")
        time.sleep(delay)
        killed, out, err = kill(p)
        if not killed:
            # the machine was fast enough to finish: that is a good commit
            assert p.returncode == 0, err
            break
        killed_any += 1
        ids = log_ids(cli, "datasets/k")
        if ids != [base]:
            # the kill landed after the branch moved (while the process was
            # exiting): the move is durable, so the commit must be whole
            assert len(ids) == 2 and ids[1] == base, (delay, ids)
            assert_fsck_clean(cli)
            out_late = tmp_path / f"late-{delay}"
            cli.run("checkout", "datasets/k", out_late)
            assert_same_tree(src, out_late)
            break
        assert_fsck_clean(cli)
        gc(cli, False)
        assert nothing_to_collect(gc(cli, True))
    assert killed_any >= 1

    # 3. the commit run to the end reads back byte for byte
    p = cli.run("commit", "datasets/k", src, "-m", "complete")
    head = p.stdout.decode().strip()
    assert head != base
    ids = log_ids(cli, "datasets/k")
    assert ids[0] == head and ids[-1] == base
    assert log_ids(cli, "datasets/k@side") == [base]
    assert cli.json("show", "datasets/k@base")["id"] == base
    out2 = tmp_path / "complete"
    cli.run("checkout", "datasets/k", out2)
    assert_same_tree(src, out2)
    assert_fsck_clean(cli)
    assert nothing_to_collect(gc(cli, True))


def flip_in_store(store, pattern, pos):
    """Flip the byte at pos inside every copy of pattern in data.mdb; return the count."""
    path = store / DATA_MDB
    data = bytearray(path.read_bytes())
    n = 0
    i = data.find(pattern)
    while i >= 0:
        data[i + pos] ^= 0x5A
        n += 1
        i = data.find(pattern, i + 1)
    path.write_bytes(data)
    return n


def test_corrupt_chunk_is_found_and_never_served(cli, tmp_path):
    src = tmp_path / "src"
    target = rand_bytes(99, 3 * MiB)          # a distinctive, incompressible pattern
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "target.bin").write_bytes(target)
    (src / "copy-of-target.bin").write_bytes(target)
    (src / "fine.bin").write_bytes(rand_bytes(98, 200_000))
    cli.create("datasets/c")
    c1 = cli.commit("datasets/c", src, "v1")
    (src / "later.txt").write_bytes(b"second commit\n")
    c2 = cli.commit("datasets/c", src, "v2")

    # damage a copy of the store; the original stays as a reference
    bad = tmp_path / "bad-store"
    shutil.copytree(cli.store, bad)
    good = cli
    cli = type(good)(good.bin, bad, good.env)
    # 64 bytes from the middle of the file: inside one stored chunk unless a
    # chunk boundary falls in them, then try the next spot
    for off in range(3 * MiB // 2, 3 * MiB, 4096):
        n = flip_in_store(bad, target[off:off + 64], 10)
        if n:
            break
    assert n == 1, "the file's bytes should be stored exactly once"

    p = cli.run("fsck", rc=3)
    text = p.stdout.decode()
    faults = [l for l in text.splitlines() if l.startswith(("chunk ", "blob "))]
    assert faults, text
    m = re.match(r"chunk ([0-9a-f]{32}): corrupt: bytes hash to [0-9a-f]{32} \(in (.*)\)$", faults[0])
    assert m, faults[0]
    chunk = m.group(1)
    where = [re.search(r"\(in (.*)\)$", l).group(1) for l in faults]
    assert all(w.startswith("datasets/c@") for w in where), where
    named = {w.split(":", 1)[1] for w in where}
    # every file that uses the damaged chunk is named
    assert named == {"sub/target.bin", "copy-of-target.bin"}, faults
    assert "fsck found damage" in text and "fine.bin" not in text

    j = json.loads(cli.run("fsck", "--json", rc=3).stdout)
    assert j["ok"] is False
    assert list(j["checked"]) == ["refs", "commits", "trees", "blobs", "chunks", "labelsets", "bytes"]
    assert j["checked"]["commits"] == 2
    assert all(list(f) == ["kind", "id", "where", "message"] for f in j["faults"])
    assert {f["where"].split(":", 1)[1] for f in j["faults"]} == named
    assert {(f["kind"], f["id"]) for f in j["faults"]} == {("chunk", chunk)}

    # cat: an error naming the chunk, and never a wrong byte
    for rel in ("sub/target.bin", "copy-of-target.bin"):
        for rev in (c1, c2):
            p = cli.fail("cat", f"datasets/c@{rev}:{rel}")
            assert chunk in p.stderr.decode() and "corrupt" in p.stderr.decode()
            assert len(p.stdout) < len(target) and target.startswith(p.stdout)
    assert cli.cat("datasets/c:fine.bin") == (src / "fine.bin").read_bytes()
    p = cli.fail("checkout", "datasets/c", tmp_path / "co-bad")
    assert chunk in p.stderr.decode()
    # the undamaged store is clean and serves the same bytes
    assert good.json("fsck")["ok"] is True
    assert good.cat("datasets/c:sub/target.bin") == target

    # committing the good bytes again repairs the stored chunk
    p = cli.run("commit", "datasets/c", src, "-m", "repair", "--no-cache")
    assert p.stdout.decode().strip() == c2
    assert cli.json("fsck")["ok"] is True
    assert cli.cat(f"datasets/c@{c1}:sub/target.bin") == target
    out = tmp_path / "co-repaired"
    cli.run("checkout", "datasets/c", out)
    assert_same_tree(src, out)


def test_gc_keeps_everything_reachable(cli, tmp_path):
    """gc on a store with history in several repos, branches and tags deletes nothing."""
    versions = {}
    for repo in ("datasets/g1", "models/g2"):
        cli.create(repo)
        d = tmp_path / repo.replace("/", "-")
        for i in range(3):
            write_random(d / f"f{i}.bin", f"{repo}/{i}", 300_000 + i)
            (d / "shared.bin").write_bytes(rand_bytes(5, 400_000))  # same in both repos
            c = cli.commit(repo, d, f"v{i}")
            cli.run("tag", repo, f"t{i}")
            if i == 1:
                cli.run("branch", repo, "old")
            versions[(repo, c)] = {p.name: p.read_bytes() for p in d.iterdir()}
    du = cli.du()
    r = gc(cli, True)
    assert nothing_to_collect(r), r
    assert r["kept"] > 0
    r = gc(cli, False)
    assert nothing_to_collect(r), r
    assert cli.du()["stored_bytes"] == du["stored_bytes"]
    for (repo, c), files in versions.items():
        for name, data in files.items():
            assert cli.cat(f"{repo}@{c}:{name}") == data
    assert_fsck_clean(cli)
    cli.fail("gc", "extra-arg", rc=2)


def test_gc_waits_for_no_commit(cli, tmp_path, big_file):
    """gc refuses to run while a commit holds the store (its batches are not reachable yet)."""
    src = tmp_path / "src"
    src.mkdir()
    os.link(big_file[0], src / "big.bin")
    cli.create("datasets/busy")
    for attempt in range(3):
        p = start_commit(cli, "datasets/busy", src, "long")
        time.sleep(0.1)  # let it take the store's shared lock first
        seen_busy = False
        while p.poll() is None:
            r = cli.run("gc", rc=None)
            if r.returncode == 1:
                assert "busy" in r.stderr.decode() and "hint:" in r.stderr.decode(), r.stderr
                seen_busy = True
            else:
                assert r.returncode == 0, r.stderr
            time.sleep(0.02)
        out, err = p.communicate()
        # the commit itself does not wait either: if a gc was still running
        # when it started it is refused the same way; then try again
        if p.returncode == 1 and b"gc is running" in err:
            continue
        break
    assert p.returncode == 0, err
    assert seen_busy, "gc never overlapped the commit"
    head = out.decode().strip()
    assert log_ids(cli, "datasets/busy") == [head]
    assert_fsck_clean(cli)
    (e,) = cli.json("ls", "datasets/busy")
    assert e["size"] == 256 * MiB


def test_concurrent_commits_to_one_branch(cli, tmp_path):
    """Two commits racing for one branch: each either lands on top of the other or is refused."""
    dirs = []
    for i in range(2):
        d = tmp_path / f"d{i}"
        write_random(d / "data.bin", 500 + i, 96 * MiB)
        dirs.append(d)
    cli.create("datasets/race")
    procs = [start_commit(cli, "datasets/race", d, f"racer {i}") for i, d in enumerate(dirs)]
    results = [p.communicate() + (p.returncode,) for p in procs]
    won = [out.decode().strip() for out, err, rc in results if rc == 0]
    for out, err, rc in results:
        if rc != 0:
            assert rc == 1 and err.decode().startswith("artifs: error: "), err
            assert "moved while this operation ran" in err.decode() and "hint:" in err.decode(), err
    assert won
    ids = log_ids(cli, "datasets/race")
    assert ids[0] == won[-1] or ids[0] in won
    assert sorted(ids) == sorted(won)
    assert_fsck_clean(cli)
    for c in ids:
        msg = cli.json("show", f"datasets/race@{c}")["message"]
        i = int(msg.split()[-1])
        assert cli.cat(f"datasets/race@{c}:data.bin") == (dirs[i] / "data.bin").read_bytes()


def test_file_changing_during_commit_fails_cleanly(cli, tmp_path):
    """A file rewritten while it is read fails the commit and leaves the branch alone."""
    src = tmp_path / "src"
    write_random(src / "stable.bin", 1, 100_000)
    cli.create("datasets/chg")
    base = cli.commit("datasets/chg", src, "base")
    hot = src / "hot.bin"
    size = 32 * MiB
    write_random(hot, 2, size)
    stop = threading.Event()

    def scribble():
        fd = os.open(hot, os.O_WRONLY)
        r = rand_bytes(3, 4096)
        i = 0
        try:
            while not stop.is_set():
                os.pwrite(fd, r, (i * 7919 * 4096) % (size - 4096))
                i += 1
                time.sleep(0.0005)
        finally:
            os.close(fd)

    t = threading.Thread(target=scribble)
    t.start()
    try:
        p = cli.fail("commit", "datasets/chg", src, "-m", "while writing")
    finally:
        stop.set()
        t.join()
    err = p.stderr.decode()
    assert "hot.bin" in err and "changed while it was being read" in err, err
    assert p.stdout == b""
    assert log_ids(cli, "datasets/chg") == [base]
    assert_fsck_clean(cli)
    # once the writer stopped, the same commit goes through and reads back
    cli.commit("datasets/chg", src, "quiet now")
    assert cli.cat("datasets/chg:hot.bin") == hot.read_bytes()
