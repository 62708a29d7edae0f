"""Remotes: push, pull and clone through a directory (file://) and an
S3-compatible server on loopback (s3rver, see s3server.py).

Every test runs against both kinds of remote.  Stores are compared with
ordinary tools after `artifs checkout`; the remote's layout (packs/, refs/)
is read directly where a test needs to damage or inspect it.
"""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clihelpers import MiB, Artifs, make_small_tree, set_old_mtime, tree_listing, write_random
from s3server import list_keys, s3  # noqa: F401 (a fixture)

REPO = "datasets/d"


@pytest.fixture(params=["file", "s3"])
def remote(request, tmp_path):
    """(url, extra environment, kind) of an empty remote."""
    if request.param == "file":
        d = tmp_path / "remote"
        yield f"file://{d}", {}, "file"
        return
    srv = request.getfixturevalue("s3")
    yield srv.url, dict(srv.env), "s3"


def store(artifs_bin, tmp_path, env, name, extra):
    e = dict(env)
    e.update(extra)
    return Artifs(artifs_bin, tmp_path / name, e)


def stats(stderr):
    """Figures of the summary line of push/pull."""
    m = re.search(rb"(pushed|fetched) (\d+) objects .* (\d+) already there, (\d+) requests", stderr)
    assert m, stderr
    return {"objects": int(m.group(2)), "skipped": int(m.group(3)), "requests": int(m.group(4))}


def same_version(a, spec_a, b, spec_b, tmp_path, tag):
    da, db = tmp_path / f"co-{tag}-a", tmp_path / f"co-{tag}-b"
    a.run("checkout", spec_a, da)
    b.run("checkout", spec_b, db)
    assert tree_listing(da) == tree_listing(db)


def make_repo(cli, tmp_path, seed=1, files=60):
    cli.create(REPO)
    src = tmp_path / f"src{seed}"
    make_small_tree(src, seed, 4, files // 4, max_size=64 * 1024)
    write_random(src / "big.bin", seed, 3 * MiB + 12345)
    set_old_mtime(src)
    c1 = cli.commit(REPO, src, "first")
    return src, c1


def test_push_clone_byte_exact(artifs_bin, tmp_path, env, remote):
    url, extra, kind = remote
    a = store(artifs_bin, tmp_path, env, "a", extra).init()
    src, c1 = make_repo(a, tmp_path)
    a.run("tag", REPO, "v1")
    (src / "added.txt").write_text("more\n")
    (src / "big.bin").unlink()
    c2 = a.commit(REPO, src, "second")
    a.run("promote", REPO, "v1", "prod", "-m", "first release")
    a.run("remote", "add", "origin", url)
    assert a.text("remote", "list").split() == ["origin", url]
    p = a.run("push", "origin")
    st = stats(p.stderr)
    assert st["objects"] > 60
    # objects travel in packs: requests do not grow with the number of files
    assert st["requests"] < 40, st

    b = store(artifs_bin, tmp_path, env, "b", extra)
    b.run("clone", url, b.store, store=False)
    assert b.head(REPO) == c2
    for spec in (f"{REPO}@v1", f"{REPO}@main", f"{REPO}@prod", f"{REPO}@{c1[:12]}"):
        same_version(a, spec, b, spec, tmp_path, spec.split("@")[1])
    assert b.text("log", REPO) == a.text("log", REPO)
    b.run("fsck")

    # nothing new: nothing sent, nothing fetched
    assert stats(a.run("push", "origin").stderr)["objects"] == 0
    assert stats(b.run("pull", "origin").stderr)["objects"] == 0

    # a small change sends only its own objects, and pull fast-forwards
    (src / "added.txt").write_text("changed\n")
    c3 = a.commit(REPO, src, "third")
    st = stats(a.run("push", "origin", REPO).stderr)
    assert 0 < st["objects"] < 10, st
    b.run("pull", "origin")
    assert b.head(REPO) == c3
    same_version(a, f"{REPO}@main", b, f"{REPO}@main", tmp_path, "c3")


def test_environment_history_travels(artifs_bin, tmp_path, env, remote):
    url, extra, _ = remote
    a = store(artifs_bin, tmp_path, env, "a", extra).init()
    src, c1 = make_repo(a, tmp_path, files=8)
    (src / "x").write_text("x")
    c2 = a.commit(REPO, src, "second")
    a.run("promote", REPO, c1, "prod", "-m", "go live")
    a.run("promote", REPO, c2, "prod", "-m", "new model")
    a.run("rollback", REPO, "prod", "-m", "bad accuracy")
    a.run("remote", "add", "origin", url)
    a.run("push", "origin")
    b = store(artifs_bin, tmp_path, env, "b", extra)
    b.run("clone", url, b.store, store=False)
    hist = b.json("history", REPO, "prod", "--json")
    assert [h["op"] for h in hist] == ["rollback", "promote", "promote"]
    assert [h["reason"] for h in hist] == ["bad accuracy", "new model", "go live"]
    assert b.text("envs", REPO).split()[1] == c1[:12]
    # more moves on a: only those are sent, and b replays only those
    a.run("promote", REPO, c2, "prod", "-m", "fixed")
    a.run("push", "origin")
    b.run("pull", "origin")
    hist = b.json("history", REPO, "prod", "--json")
    assert [h["reason"] for h in hist][:2] == ["fixed", "bad accuracy"]
    assert len(hist) == 4


def test_push_race_one_branch(artifs_bin, tmp_path, env, remote):
    """Two engineers push the same branch at once: one wins, the other is told."""
    url, extra, _ = remote
    a = store(artifs_bin, tmp_path, env, "a", extra).init()
    src, _ = make_repo(a, tmp_path, files=8)
    a.run("remote", "add", "origin", url)
    a.run("push", "origin")
    b = store(artifs_bin, tmp_path, env, "b", extra)
    b.run("clone", url, b.store, store=False)
    for rnd in range(4):
        heads = {}
        for who, st in (("a", a), ("b", b)):
            d = tmp_path / f"race-{who}"
            d.mkdir(exist_ok=True)
            (d / "f").write_text(f"{who} {rnd}\n")
            heads[who] = st.commit(REPO, d, f"{who} {rnd}")
        results = {}

        def push(who, st):
            results[who] = st.run("push", "origin", rc=None)

        ts = [threading.Thread(target=push, args=(w, s)) for w, s in (("a", a), ("b", b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        ok = [w for w, p in results.items() if p.returncode == 0]
        assert len(ok) == 1, {w: p.stderr for w, p in results.items()}
        loser = "b" if ok == ["a"] else "a"
        assert b"non-fast-forward" in results[loser].stderr
        # the remote has the winner's commit
        c = store(artifs_bin, tmp_path, env, f"c{rnd}", extra)
        c.run("clone", url, c.store, store=False)
        assert c.head(REPO) == heads[ok[0]]
        # the loser cannot pull over its own commit either: diverged, said plainly
        lose = a if loser == "a" else b
        p = lose.run("pull", "origin", rc=1)
        assert b"diverged" in p.stderr
        # recover: a fresh clone is the documented way; make the loser equal to the remote
        fresh = store(artifs_bin, tmp_path, env, f"{loser}{rnd}", extra)
        fresh.run("clone", url, fresh.store, store=False)
        if loser == "a":
            a = fresh
        else:
            b = fresh


def test_tag_conflict_and_bad_names(artifs_bin, tmp_path, env, remote):
    url, extra, _ = remote
    a = store(artifs_bin, tmp_path, env, "a", extra).init()
    src, c1 = make_repo(a, tmp_path, files=8)
    a.run("tag", REPO, "v1")
    a.run("remote", "add", "origin", url)
    a.run("push", "origin")
    b = store(artifs_bin, tmp_path, env, "b", extra).init()
    b.create(REPO)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("other")
    b.commit(REPO, tmp_path / "other", "other")
    b.run("tag", REPO, "v1")
    b.run("remote", "add", "origin", url)
    p = b.run("push", "origin", f"{REPO}@v1", rc=1)
    assert b"tags never move" in p.stderr
    p = b.run("push", "nosuch", rc=1)
    assert b"no remote 'nosuch'" in p.stderr
    p = b.run("remote", "add", "x", "http://example.org/x", rc=2)
    assert b"not a remote URL" in p.stderr
    p = b.run("pull", "origin", "datasets/none", rc=1)
    assert b"has no 'datasets/none'" in p.stderr
    b.run("remote", "remove", "origin")
    assert b.text("remote", "list") == ""


def remote_files(url, kind, prefix):
    if kind == "file":
        root = Path(url[len("file://"):])
        return sorted(str(p.relative_to(root)) for p in (root / prefix).rglob("*") if p.is_file())
    return None


def big_repo(artifs_bin, tmp_path, env, extra, url, nfiles, seed):
    """Store 'a' with one commit of nfiles x 16 MiB random files and remote 'origin'."""
    a = store(artifs_bin, tmp_path, env, "a", extra).init()
    a.create(REPO)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(nfiles):
        write_random(src / f"part{i:02d}.bin", seed + i, 16 * MiB)
    head = a.commit(REPO, src, "big")
    a.run("remote", "add", "origin", url)
    return a, head


def test_interrupted_push_resumes(artifs_bin, tmp_path, env, remote):
    """Kill a push after its first packs landed; the rerun sends only the rest."""
    url, extra, kind = remote
    a, head = big_repo(artifs_bin, tmp_path, env, extra, url, 12, 100)
    cmd = [a.bin, "--store", str(a.store), "push", "origin", "-j", "1"]
    proc = subprocess.Popen(cmd, env=a.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait for two finished packs (an index is written after its pack)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if kind == "file":
            done = len([f for f in remote_files(url, kind, "packs") or [] if f.endswith(".idx")])
        else:
            done = len([k for k in list_keys(url, a.env)
                        if k.endswith(".idx")])
        if done >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done >= 2, "the push finished or stalled before two packs were written"
    p = a.run("push", "origin")
    st = stats(p.stderr)
    assert st["skipped"] > 0, st          # the finished packs were not sent again
    total = 12 * 16 * MiB
    m = re.search(rb"objects \(([\d.]+) MiB\)", p.stderr)
    assert m and float(m.group(1)) * MiB < total - 30 * MiB, p.stderr
    b = store(artifs_bin, tmp_path, env, "b", extra)
    b.run("clone", url, b.store, store=False)
    assert b.head(REPO) == head
    same_version(a, f"{REPO}@main", b, f"{REPO}@main", tmp_path, "resumed")
    b.run("fsck")


def test_damaged_pack_is_refused(artifs_bin, tmp_path, env):
    """A flipped byte in a pack on the remote: the clone fails naming it, stores nothing."""
    a = store(artifs_bin, tmp_path, env, "a", {}).init()
    make_repo(a, tmp_path, files=8)
    url = f"file://{tmp_path / 'remote'}"
    a.run("remote", "add", "origin", url)
    a.run("push", "origin")
    packs = sorted((tmp_path / "remote" / "packs").glob("*.pack"), key=lambda p: -p.stat().st_size)
    big = packs[0]
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 0x40
    big.write_bytes(bytes(data))
    b = store(artifs_bin, tmp_path, env, "b", {})
    p = b.run("clone", url, b.store, store=False, rc=1)
    assert b"does not match its id" in p.stderr
    assert b.run("repos").stdout == b""
    b.run("fsck")


def test_damaged_index_is_left_out(artifs_bin, tmp_path, env):
    """A pack index cut short on the remote (an upload cut off on a store whose
    writes are not atomic): fetches leave its pack out with a warning and
    report what only it held as missing; the next push sends those objects
    again, and a clone then gets everything."""
    a = store(artifs_bin, tmp_path, env, "a", {}).init()
    make_repo(a, tmp_path, files=8)
    url = f"file://{tmp_path / 'remote'}"
    a.run("remote", "add", "origin", url)
    a.run("push", "origin")
    idx = sorted((tmp_path / "remote" / "packs").glob("*.idx"), key=lambda p: -p.stat().st_size)[0]
    data = idx.read_bytes()
    idx.write_bytes(data[:len(data) // 2])
    # as if the upload had been cut off: the pusher never kept its own copy
    (a.store / "remotes" / "origin" / idx.name).unlink()

    b = store(artifs_bin, tmp_path, env, "b", {})
    p = b.run("clone", url, b.store, store=False, rc=None)
    err = p.stderr.decode()
    assert f"pack index {idx.stem} on remote" in err and "damaged" in err, err
    assert p.returncode != 0 and "artifs: error: " in err, err
    assert b"error:" not in p.stderr.split(b"damaged")[0], err   # a warning first, not an error

    p = a.run("push", "origin")
    err = p.stderr.decode()
    assert f"pack index {idx.stem} on remote" in err and "damaged" in err, err
    assert stats(p.stderr)["objects"] > 0, err

    c = store(artifs_bin, tmp_path, env, "c", {})
    p = c.run("clone", url, c.store, store=False)
    same_version(a, f"{REPO}@main", c, f"{REPO}@main", tmp_path, "healed")
    c.run("fsck")


def test_interrupted_pull_resumes(artifs_bin, tmp_path, env, remote):
    """Kill a clone after some chunks were stored; pulling again fetches only the rest."""
    url, extra, kind = remote
    a, head = big_repo(artifs_bin, tmp_path, env, extra, url, 10, 300)
    a.run("push", "origin")
    b = store(artifs_bin, tmp_path, env, "b", extra)
    proc = subprocess.Popen([b.bin, "clone", url, str(b.store), "-j", "1"], env=b.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # chunks reach the store in transactions of 64 MiB: wait for the first
    deadline = time.time() + 120
    data = b.store / "data.mdb"
    while time.time() < deadline and proc.poll() is None:
        if data.exists() and data.stat().st_size > 70 * MiB:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the clone ended before it could be interrupted"
    # the killed clone moved no ref, and the store is sound
    assert b.run("repos").stdout == b""
    b.run("fsck")
    p = b.run("pull", "origin")
    m = re.search(rb"fetched \d+ objects \(([\d.]+) MiB\)", p.stderr)
    assert m and float(m.group(1)) < 160 - 50, p.stderr
    assert b.head(REPO) == head
    same_version(a, f"{REPO}@main", b, f"{REPO}@main", tmp_path, "pulled")
