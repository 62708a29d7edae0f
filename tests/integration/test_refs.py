"""Refs (tags, branches, commit-id prefixes), diff, and the JSON of log/show/repos/ls."""

import datetime
import json
import os
import struct
import re
import shutil

import pytest

from clihelpers import is_oid, rand_bytes


def write(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


@pytest.fixture
def three(cli, tmp_path):
    """datasets/r with commits c1 <- c2 on main."""
    a = tmp_path / "a"
    write(a, {"x.txt": b"one\n", "d/y.bin": rand_bytes(1, 5000)})
    b = tmp_path / "b"
    write(b, {"x.txt": b"two\n", "d/y.bin": rand_bytes(1, 5000)})
    cli.create("datasets/r")
    c1 = cli.commit("datasets/r", a, "first")
    c2 = cli.commit("datasets/r", b, "second")
    return cli, c1, c2, a, b


def err_line(p):
    err = p.stderr.decode()
    assert err.startswith("artifs: error: "), err
    return err


def test_tags_never_move(three):
    cli, c1, c2, a, b = three
    assert cli.text("tag", "datasets/r", "v1", c1).strip() == c1
    # the same commit again is a no-op, by any name of it
    assert cli.text("tag", "datasets/r", "v1", c1[:8]).strip() == c1
    # another commit is refused, with a clear message and a hint
    p = cli.fail("tag", "datasets/r", "v1")  # REV defaults to main = c2
    err = err_line(p)
    assert "v1" in err and "never move" in err and "hint:" in err
    p = cli.fail("tag", "datasets/r", "v1", c2)
    assert p.stdout == b""
    assert cli.json("show", "datasets/r@v1")["id"] == c1
    tags = cli.json("tag", "datasets/r", "--list")
    assert [(t["name"], t["commit"]) for t in tags] == [("v1", c1)]
    assert isinstance(tags[0]["updated"], int)
    assert "v1" in cli.text("tag", "datasets/r", "--list")
    # a tag cannot be committed to
    p = cli.fail("commit", "datasets/r@v1", a, "-m", "x")
    assert "tag" in err_line(p)
    assert cli.json("show", "datasets/r@v1")["id"] == c1
    # a tag name already used by a branch is refused
    err_line(cli.fail("tag", "datasets/r", "main", c1))
    for bad in (".v", "a/b", "x.lock", "sp ace", "v" * 101, "é"):
        err_line(cli.fail("tag", "datasets/r", bad, c1))
    err_line(cli.fail("tag", "datasets/r", "--", "-v", c1))
    assert [t["name"] for t in cli.json("tag", "datasets/r", "--list")] == ["v1"]


def test_branches(three, tmp_path):
    cli, c1, c2, a, b = three
    assert cli.text("branch", "datasets/r", "dev", c1[:6]).strip() == c1
    lst = cli.json("branch", "datasets/r", "--list")
    assert {x["name"]: x["commit"] for x in lst} == {"dev": c1, "main": c2}
    assert set(lst[0]) == {"name", "commit", "updated"}
    text = cli.text("branch", "datasets/r", "--list")
    assert re.search(rf"^dev\s+{c1}$", text, re.M) and re.search(rf"^main\s+{c2}$", text, re.M)

    # commit to REPO@branch: its parent is the branch head; main does not move
    c3dir = tmp_path / "c3"
    write(c3dir, {"x.txt": b"dev work\n"})
    c3 = cli.commit("datasets/r@dev", c3dir, "on dev")
    assert [c["id"] for c in cli.json("log", "datasets/r@dev")] == [c3, c1]
    assert cli.head("datasets/r") == c2
    assert cli.cat("datasets/r@dev:x.txt") == b"dev work\n"
    assert cli.cat("datasets/r@main:x.txt") == b"two\n"

    # existing branch, missing branch, bad names
    err_line(cli.fail("branch", "datasets/r", "dev", c2))
    assert cli.head("datasets/r", "dev") == c3
    p = cli.fail("commit", "datasets/r@nobranch", c3dir, "-m", "x")
    assert "nobranch" in p.stderr.decode() and "hint:" in p.stderr.decode()
    err_line(cli.fail("branch", "datasets/r", "bad/name"))
    err_line(cli.fail("branch", "datasets/r", "x", "nosuchref"))
    # a new branch from the default REV (main)
    assert cli.text("branch", "datasets/r", "from-main").strip() == c2
    # repos shows the refs and main's head
    (r,) = cli.json("repos")
    assert r == {"name": "datasets/r", "kind": "dataset", "created": r["created"], "refs": 3, "main": c2}


def test_branch_delete(three, tmp_path):
    """branch -d: the branch goes, its versions stay until gc finds nothing else
    using them, the deletion is logged, and a branch made later under the
    name continues the log."""
    cli, c1, c2, a, b = three
    exp = tmp_path / "exp"
    write(exp, {"x.txt": b"experiment\n", "big.bin": rand_bytes(7, 3 << 20)})
    cli.run("branch", "datasets/r", "exp", c1)
    c3 = cli.commit("datasets/r@exp", exp, "try")
    cli.run("tag", "datasets/r", "v1", c1)
    before = cli.json("du")

    p = cli.run("branch", "-d", "datasets/r", "exp")
    assert p.stdout.decode().strip() == c3          # what it pointed at
    assert f"deleted branch exp of datasets/r (was {c3})" in p.stderr.decode()
    assert [x["name"] for x in cli.json("branch", "datasets/r", "--list")] == ["main"]
    err_line(cli.fail("log", "datasets/r@exp"))
    # refused: a missing branch, main, a tag, a missing repository, no name
    assert "no branch 'exp'" in err_line(cli.fail("branch", "-d", "datasets/r", "exp"))
    assert "main" in err_line(cli.fail("branch", "--delete", "datasets/r", "main"))
    assert "is a tag" in err_line(cli.fail("branch", "-d", "datasets/r", "v1"))
    err_line(cli.fail("branch", "-d", "datasets/none", "exp"))
    cli.run("branch", "-d", "datasets/r", rc=2)
    assert cli.text("cat", "datasets/r@v1:x.txt") == "one\n"

    # logged, in the history of every ref and of the name
    h = [e for e in cli.json("history", "datasets/r", "--all") if e["ref"] == "exp"]
    assert [e["op"] for e in h] == ["delete", "commit", "branch"]
    assert h[0]["from"] == c3 and h[0]["to"] is None and [e["seq"] for e in h] == [3, 2, 1]
    assert [e["op"] for e in cli.json("history", "datasets/r", "exp")] == ["delete", "commit", "branch"]

    # until gc the versions are there: the branch can be made again at its id
    cli.run("branch", "datasets/r", "exp", c3)
    assert cli.cat("datasets/r@exp:big.bin") == (exp / "big.bin").read_bytes()
    h = cli.json("history", "datasets/r", "exp")
    assert [(e["op"], e["seq"]) for e in h][:2] == [("branch", 4), ("delete", 3)]
    # deleted again, gc frees what only it used; the rest stays whole
    cli.run("branch", "-d", "datasets/r", "exp")
    g = cli.json("gc")
    assert g["removed"]["commits"] == 1 and g["bytes_freed"] >= 3 << 20, g
    assert cli.json("du")["stored_bytes"] <= before["stored_bytes"] - (3 << 20)
    err_line(cli.fail("branch", "datasets/r", "exp", c3))
    cli.run("fsck")
    assert cli.cat("datasets/r@main:x.txt") == b"two\n"
    assert cli.cat("datasets/r@v1:d/y.bin") == (a / "d/y.bin").read_bytes()


def flip_ref_record(store, repo, name, off, xor):
    """XOR byte `off` of ref (repo, name)'s record in data.mdb (off -1: the last
    byte of its key), in every copy of the record LMDB's pages hold; how many."""
    path = store / "data.mdb"
    data = path.read_bytes()
    key = repo.encode() + b"\0" + name.encode()
    n = 0
    fd = os.open(path, os.O_RDWR)
    try:
        i = data.find(key)
        while i >= 8:
            # an LMDB leaf node: u16 size lo, u16 size hi, u16 flags, u16 key size, key, value
            if struct.unpack("<HHHH", data[i - 8:i]) == (40, 0, 0, len(key)):
                at = i + len(key) + off
                os.pwrite(fd, bytes([data[at] ^ xor]), at)
                n += 1
            i = data.find(key, i + 1)
    finally:
        os.close(fd)
    assert n, f"no record of {repo}:{name} in {path}"
    return n


def test_damaged_refs_found_and_repaired(cli, tmp_path):
    """Refs have no ids to check against: each record carries a checksum, and
    every move is in the ref log too (same transaction).  fsck finds a damaged
    or lost ref, gc refuses to run (what only that ref holds would look like
    garbage), and fsck --repair-refs rebuilds refs from their logs."""
    cli.create("datasets/r")
    a = tmp_path / "a"
    write(a, {"x.txt": b"one\n"})
    c1 = cli.commit("datasets/r", a, "one")
    cli.run("branch", "datasets/r", "exp")
    write(a, {"x.txt": b"only on exp\n", "big.bin": rand_bytes(3, 1 << 20)})
    c2 = cli.commit("datasets/r@exp", a, "exp work")
    cli.run("tag", "datasets/r", "v1", c1)
    cli.run("promote", "datasets/r", c1, "prod")
    refs = {x["name"]: x["commit"] for x in cli.json("branch", "datasets/r", "--list")}
    cli.run("fsck")

    def faults():
        p = cli.run("fsck", "--json", rc=3)
        out = {}
        for f in json.loads(p.stdout)["faults"]:
            if f["kind"] == "ref":
                out[f["where"]] = out.get(f["where"], "") + f["message"] + "; "
        return out

    # the move count of exp (a field nothing else checks)
    flip_ref_record(cli.store, "datasets/r", "exp", 32, 1)
    f = faults()
    assert list(f) == ["datasets/r:exp"] and "checksum" in f["datasets/r:exp"], f
    assert "damaged" in err_line(cli.fail("log", "datasets/r@exp"))
    assert "gc refused" in err_line(cli.fail("gc"))
    p = cli.run("fsck", "--repair-refs")
    assert "repaired ref datasets/r:exp: rewritten from its log" in p.stderr.decode()
    assert cli.head("datasets/r", "exp") == c2
    assert cli.cat("datasets/r@exp:x.txt") == b"only on exp\n"     # gc did not take it

    # a name changed: the damaged record goes, the lost one comes back
    flip_ref_record(cli.store, "datasets/r", "exp", -1, 1)       # exp -> exq
    f = faults()
    assert set(f) == {"datasets/r:exq", "datasets/r:exp"}, f
    assert "lost" in f["datasets/r:exp"]
    cli.fail("gc")
    cli.run("fsck", "--repair-refs")
    assert {x["name"]: x["commit"] for x in cli.json("branch", "datasets/r", "--list")} == refs

    # a record from before checksums (its flag clear) whose target changed: the log disagrees
    flip_ref_record(cli.store, "datasets/r", "main", 1, 1)
    flip_ref_record(cli.store, "datasets/r", "main", 8, 0x40)
    f = faults()
    assert "last logged move was to " + c1 in f["datasets/r:main"], f
    cli.run("fsck", "--repair-refs")
    assert cli.head("datasets/r") == c1

    # an environment whose kind byte is damaged comes back an environment
    flip_ref_record(cli.store, "datasets/r", "prod", 0, 0x20)
    assert "datasets/r:prod" in faults()
    cli.run("fsck", "--repair-refs")
    envs = {e["name"]: e["commit"] for e in cli.json("envs", "datasets/r")}
    assert envs == {"prod": c1}
    assert [t["name"] for t in cli.json("tag", "datasets/r", "--list")] == ["v1"]
    cli.run("fsck")
    cli.run("gc")
    p = cli.run("fsck", "--repair-refs")
    assert "no damaged refs to repair" in p.stderr.decode()


def test_commit_id_prefixes(three, tmp_path):
    cli, c1, c2, a, b = three
    for n in (6, 7, 12, 31, 32):
        assert cli.json("show", f"datasets/r@{c1[:n]}")["id"] == c1, n
        assert cli.cat(f"datasets/r@{c2[:n]}:x.txt") == b"two\n"
    for n in (1, 4, 5):
        p = cli.fail("show", f"datasets/r@{c1[:n]}")
        assert c1[:n] in err_line(p)
    # not hex, too long, unknown
    err_line(cli.fail("show", "datasets/r@" + "g" * 8))
    err_line(cli.fail("show", "datasets/r@" + c1 + "0"))
    p = cli.fail("log", "datasets/r@nosuchref")
    assert "'nosuchref' is not a branch, tag, environment or commit of 'datasets/r'" in err_line(p)
    # a prefix resolves within its repository only
    cli.create("datasets/other")
    o = tmp_path / "o"
    write(o, {"f": b"other"})
    cli.commit("datasets/other", o, "other")
    err_line(cli.fail("show", f"datasets/other@{c1[:10]}"))
    # unknown repository, branch without commits
    p = cli.fail("log", "datasets/nope")
    assert "datasets/nope" in err_line(p) and "does not exist" in err_line(p)
    cli.create("models/empty")
    p = cli.fail("log", "models/empty")
    assert "no commits" in err_line(p)
    p = cli.fail("ls", "models/empty@main")
    assert "no commits" in err_line(p)


def build_v1(root):
    write(root, {
        "keep.txt": b"same\n",
        "mod.txt": b"old contents\n",
        "del.txt": b"to be removed\n",
        "mode.sh": b"#!/bin/sh\n",
        "both.sh": b"#!/bin/sh\nv1\n",
        "sub/deep/keep.bin": rand_bytes(2, 3000),
        "sub/deep/gone.bin": rand_bytes(3, 700),
        "becomes-dir": b"a file now\n",
    })
    os.symlink("keep.txt", root / "link")
    (root / "gone-empty").mkdir()
    (root / "stays-empty").mkdir()


def build_v2(v1, root):
    shutil.copytree(v1, root, symlinks=True)
    (root / "mod.txt").write_bytes(b"new contents, longer\n")
    (root / "del.txt").unlink()
    (root / "add.txt").write_bytes(b"added\n")
    os.chmod(root / "mode.sh", 0o755)
    (root / "both.sh").write_bytes(b"#!/bin/sh\nv2\n")
    os.chmod(root / "both.sh", 0o755)
    (root / "sub/deep/gone.bin").unlink()
    (root / "sub/new/inner").mkdir(parents=True)
    (root / "sub/new/inner/n.txt").write_bytes(b"nested new\n")
    (root / "becomes-dir").unlink()
    (root / "becomes-dir").mkdir()
    (root / "becomes-dir/child").write_bytes(b"child\n")
    (root / "link").unlink()
    os.symlink("mod.txt", root / "link")
    (root / "gone-empty").rmdir()
    (root / "new-empty/inner").mkdir(parents=True)


def test_diff(cli, tmp_path):
    v1 = tmp_path / "v1"
    v2 = tmp_path / "v2"
    build_v1(v1)
    build_v2(v1, v2)
    cli.create("datasets/df")
    c1 = cli.commit("datasets/df", v1, "v1")
    c2 = cli.commit("datasets/df", v2, "v2")
    expect = [
        ("A", "add.txt"),
        ("D", "becomes-dir"),
        ("A", "becomes-dir/child"),
        ("M", "both.sh"),
        ("D", "del.txt"),
        ("D", "gone-empty/"),        # empty directories are kept, so they are changes
        ("M", "link"),
        ("M", "mod.txt"),
        ("X", "mode.sh"),
        ("A", "new-empty/inner/"),
        ("D", "sub/deep/gone.bin"),
        ("A", "sub/new/inner/n.txt"),
    ]
    text = cli.text("diff", f"datasets/df@{c1}", "datasets/df@main")
    assert text == "".join(f"{s}\t{p}\n" for s, p in expect)

    # reversed: added and removed swap
    swap = {"A": "D", "D": "A", "M": "M", "X": "X"}
    rev = cli.text("diff", "datasets/df@main", f"datasets/df@{c1[:6]}")
    assert sorted(rev.splitlines()) == sorted(f"{swap[s]}\t{p}" for s, p in expect)

    # JSON, checked against the README schema and the files themselves
    d = cli.json("diff", f"datasets/df@{c1}", f"datasets/df@{c2}")
    assert list(d) == ["from", "to", "stat", "changes"]
    assert d["from"] == c1 and d["to"] == c2
    names = {"A": "added", "D": "removed", "M": "modified", "X": "mode"}
    assert [(c["status"], c["path"]) for c in d["changes"]] == [(names[s], p.rstrip("/")) for s, p in expect]
    ls1 = {e["path"]: e for e in cli.json("ls", "-r", f"datasets/df@{c1}")}
    ls2 = {e["path"]: e for e in cli.json("ls", "-r", f"datasets/df@{c2}")}
    old_keys = {"old_type", "old_size", "old_id", "old_executable"}
    new_keys = {"new_type", "new_size", "new_id", "new_executable"}
    for c in d["changes"]:
        keys = set(c) - {"status", "path"}
        if c["status"] == "added":
            assert keys == new_keys, c
        elif c["status"] == "removed":
            assert keys == old_keys, c
        else:
            assert keys == old_keys | new_keys, c
        for side, ls in (("old", ls1), ("new", ls2)):
            if f"{side}_type" in c:
                e = ls[c["path"]]
                assert (c[f"{side}_type"], c[f"{side}_size"], c[f"{side}_id"], c[f"{side}_executable"]) == \
                    (e["type"], e["size"], e["id"], e["executable"]), (side, c, e)
    by = {c["path"]: c for c in d["changes"]}
    assert by["mode.sh"]["old_executable"] is False and by["mode.sh"]["new_executable"] is True
    assert by["mode.sh"]["old_id"] == by["mode.sh"]["new_id"]
    assert by["both.sh"]["old_executable"] is False and by["both.sh"]["new_executable"] is True
    assert by["link"]["old_type"] == by["link"]["new_type"] == "link"
    assert by["link"]["old_size"] == len("keep.txt") and by["link"]["new_size"] == len("mod.txt")
    st = d["stat"]
    assert list(st) == ["added", "removed", "modified", "mode", "labels", "bytes_added", "bytes_removed"]
    assert (st["added"], st["removed"], st["modified"], st["mode"], st["labels"]) == (4, 4, 3, 1, 0)
    assert by["gone-empty"]["old_type"] == "dir" and by["gone-empty"]["old_size"] == 0
    assert by["new-empty/inner"]["new_type"] == "dir"
    assert st["bytes_added"] == sum(c["new_size"] for c in d["changes"] if c["status"] in ("added", "modified"))
    assert st["bytes_removed"] == sum(c["old_size"] for c in d["changes"] if c["status"] in ("removed", "modified"))
    assert st["bytes_added"] == len(b"added\n") + len(b"child\n") + len(b"nested new\n") + \
        len(b"#!/bin/sh\nv2\n") + len("mod.txt") + len(b"new contents, longer\n")

    # --stat: counts only
    ds = cli.json("diff", "--stat", f"datasets/df@{c1}", f"datasets/df@{c2}")
    assert "changes" not in ds and ds["stat"] == st
    line = cli.text("diff", "--stat", f"datasets/df@{c1}", f"datasets/df@{c2}")
    assert line.startswith("4 added, 4 removed, 3 modified, 1 mode changed, 0 labels changed;")

    # same commit: nothing
    assert cli.text("diff", f"datasets/df@{c2}", "datasets/df@main") == ""
    e = cli.json("diff", f"datasets/df@{c2}", "datasets/df@main")
    assert e["changes"] == [] and all(v == 0 for v in e["stat"].values())
    # sub-directories can be compared
    assert cli.text("diff", f"datasets/df@{c1}:sub", f"datasets/df@{c2}:sub") == \
        "D\tdeep/gone.bin\nA\tnew/inner/n.txt\n"
    err_line(cli.fail("diff", f"datasets/df@{c1}:keep.txt", f"datasets/df@{c2}:keep.txt"))
    err_line(cli.fail("diff", f"datasets/df@{c1}", "datasets/df@nope"))


ISO = "%Y-%m-%dT%H:%M:%SZ"


def check_commit_json(c, repo):
    assert list(c) == ["id", "repo", "tree", "parents", "author", "time", "date", "message", "metadata"]
    assert is_oid(c["id"]) and is_oid(c["tree"])
    assert c["repo"] == repo
    assert all(is_oid(p) for p in c["parents"])
    assert isinstance(c["time"], int)
    assert c["date"] == datetime.datetime.fromtimestamp(c["time"], datetime.timezone.utc).strftime(ISO)
    assert isinstance(c["metadata"], dict)


def test_log_show_json(cli, tmp_path):
    cli.create("models/m")
    ids = []
    for i in range(3):
        d = tmp_path / f"v{i}"
        write(d, {"w.bin": rand_bytes(100 + i, 2000)})
        extra = ["--meta", f"step={i}", "--meta", "eval.accuracy=0.9" + str(i)]
        if i == 2:
            extra += ["--author", "someone else"]
        ids.append(cli.commit("models/m", d, f"version {i}\n\nbody ✓ données", *extra))
    log = cli.json("log", "models/m")
    assert [c["id"] for c in log] == ids[::-1]
    for i, c in enumerate(reversed(log)):
        check_commit_json(c, "models/m")
        assert c["parents"] == ([ids[i - 1]] if i else [])
        assert c["message"] == f"version {i}\n\nbody ✓ données"
        assert c["metadata"] == {"eval.accuracy": "0.9" + str(i), "step": str(i)}
        assert c["author"] == ("someone else" if i == 2 else "tester <t@example.org>")
    assert cli.json("log", "models/m", "-n", "2") == log[:2]
    assert cli.json("log", "models/m", "-n", "0") == []
    assert cli.json("log", f"models/m@{ids[1]}") == log[1:]
    for i, c in enumerate(reversed(log)):
        assert cli.json("show", f"models/m@{ids[i][:7]}") == c
    # the trees differ and ls of each version shows its file
    assert len({c["tree"] for c in log}) == 3
    assert cli.json("ls", f"models/m@{ids[0]}")[0]["id"] != cli.json("ls", "models/m")[0]["id"]

    # text forms carry the same facts
    text = cli.text("log", "models/m", "-n", "1")
    assert text.startswith(f"commit {ids[2]} (main)\n")
    assert "Author: someone else\n" in text and "Meta:   step=2\n" in text
    assert "    body ✓ données\n" in text
    show = cli.text("show", "models/m")
    assert show.startswith(f"commit  {ids[2]}\n") and f"parent  {ids[1]}\n" in show
    # tags decorate the log
    cli.run("tag", "models/m", "v0", ids[0])
    assert f"commit {ids[0]} (tag: v0)\n" in cli.text("log", "models/m")

    # metadata and message checks are usage errors
    d = tmp_path / "v0"
    cli.fail("commit", "models/m", d, rc=2)                                  # no -m
    cli.fail("commit", "models/m", d, "-m", "x", "--meta", "novalue", rc=2)
    cli.fail("commit", "models/m", d, "-m", "x", "--meta", "bad key=1", rc=2)
    cli.fail("commit", "models/m", d, "-m", "x", "--meta", "k=1", "--meta", "k=2", rc=2)
    cli.fail("log", "models/m", "-n", "x", rc=2)
    assert [c["id"] for c in cli.json("log", "models/m")] == ids[::-1]


def test_json_survives_bytes_that_are_not_utf8(cli, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / os.fsdecode(b"f-\xff.bin")).write_bytes(b"x")
    cli.create("datasets/bytes")
    c = cli.commit("datasets/bytes", d, b"message \xfe\xff end")
    (e,) = cli.json("ls", "datasets/bytes")
    assert e["path"] == "f-\ufffd.bin"
    (lg,) = cli.json("log", "datasets/bytes")
    assert lg["id"] == c and lg["message"] == "message \ufffd\ufffd end"
    dd = cli.json("diff", f"datasets/bytes@{c}", f"datasets/bytes@{c}")
    assert dd["changes"] == []
    # text output keeps the raw bytes
    assert cli.run("ls", "datasets/bytes").stdout == b"f-\xff.bin\n"
