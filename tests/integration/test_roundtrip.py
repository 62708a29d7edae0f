"""Round trips: what goes in with `commit` comes out of `cat` and `checkout` byte for byte."""

import hashlib
import os
import stat
import subprocess
import time
from pathlib import Path

from clihelpers import (MiB, assert_same_tree, make_small_tree, rand_bytes, set_old_mtime,
                      sha256_file, tree_listing, write_random)

LONG_ASCII = "n" * 251 + ".txt"          # 255 bytes
LONG_UTF8 = "é" * 127 + "x"              # 255 bytes in UTF-8
NON_UTF8 = b"raw-\xff\xfe-name.bin"      # a legal Linux name that is not UTF-8


def build_source(root):
    """Nested dirs, empty files and dirs, unicode and long names, exec bits, symlinks."""
    root = Path(root)
    files = {
        "top.txt": b"top level\n",
        "empty.txt": b"",
        "a/b/c/d/deep.bin": rand_bytes(1, 70_000),
        "a/b/empty-in-nested": b"",
        "a/sibling.txt": b"sibling\n" * 100,
        "données/日本語.txt": "こんにちは, données\n".encode(),
        "données/emoji 🙂 with spaces.bin": rand_bytes(2, 1234),
        "weird/-leading-dash": b"dash\n",
        "weird/a:colon@at": b"colon and at\n",
        "weird/logo@2x.png": rand_bytes(3, 999),
        "weird/new\nline": b"newline in name\n",
        LONG_ASCII: b"255 ascii bytes of name\n",
        "long/" + LONG_UTF8: b"255 utf-8 bytes of name\n",
        "multi-chunk.bin": rand_bytes(4, 5 * MiB + 17),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / os.fsdecode(NON_UTF8)).write_bytes(b"not utf-8\n")
    files[os.fsdecode(NON_UTF8)] = b"not utf-8\n"
    for rel in ("emptydir", "a/b/emptysub", "données/vide"):
        (root / rel).mkdir(parents=True)
    execs = {"run.sh": b"#!/bin/sh\necho hi\n", "a/b/tool": rand_bytes(5, 3000),
             "group-x-only": b"x for group only\n"}
    for rel, data in execs.items():
        (root / rel).write_bytes(data)
        files[rel] = data
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "a/b/tool", 0o700)
    os.chmod(root / "group-x-only", 0o614)
    links = {
        "link-to-file": "top.txt",
        "a/b/link-up": "../../données/日本語.txt",
        "link-to-dir": "a/b",
        "dangling": "does/not/exist",
        "absolute": "/etc/hostname-that-does-not-matter",
        "données/lien→": "日本語.txt",
    }
    for rel, target in links.items():
        os.symlink(target, root / rel)
    return files, links, {"run.sh", "a/b/tool", "group-x-only"}


def test_round_trip_cat_checkout(cli, tmp_path):
    src = tmp_path / "src"
    files, links, execs = build_source(src)
    cli.create("datasets/rt")
    head = cli.commit("datasets/rt", src, "round trip")

    # every regular file read back with cat, with and without @REF
    for rel, data in files.items():
        got = cli.cat(f"datasets/rt@main:{rel}")
        assert got == data, f"cat {rel!r}: {len(got)} bytes, wanted {len(data)}"
    assert cli.cat("datasets/rt:top.txt") == files["top.txt"]
    assert cli.cat("datasets/rt:weird/logo@2x.png") == files["weird/logo@2x.png"]
    assert cli.cat(f"datasets/rt@{head[:8]}:weird/a:colon@at") == files["weird/a:colon@at"]
    assert cli.cat(b"datasets/rt@main:" + NON_UTF8) == b"not utf-8\n"

    # cat refuses links and directories (and prints nothing)
    for rel in links:
        p = cli.fail("cat", f"datasets/rt@main:{rel}")
        assert p.stdout == b""
        assert b"symbolic link" in p.stderr
    p = cli.fail("cat", "datasets/rt@main:a/b")
    assert p.stdout == b"" and b"is a directory" in p.stderr
    cli.fail("cat", "datasets/rt@main:no/such/file")

    # links are stored as links: ls shows the type and the target's length
    for rel, target in links.items():
        (e,) = cli.json("ls", f"datasets/rt@main:{rel}")
        assert e["type"] == "link" and e["size"] == len(os.fsencode(target)), e

    # ls -r --json lists exactly the source
    entries = cli.json("ls", "-r", "datasets/rt@main")
    assert all(list(e) == ["path", "type", "executable", "size", "id"] for e in entries)
    by_path = {e["path"]: e for e in entries}
    src_list = tree_listing(src)
    assert len(entries) == len(src_list)
    for rel, (kind, ex, target) in src_list.items():
        try:
            key = rel.decode("utf-8")
        except UnicodeDecodeError:
            continue  # shown with replacement characters; checked below
        e = by_path[key]
        assert e["type"] == kind, (key, e)
        if kind == "file":
            assert e["executable"] == ex, (key, e)
            assert e["size"] == os.path.getsize(os.path.join(os.fsencode(str(src)), rel))
    assert any("\ufffd" in p for p in by_path), "non-UTF-8 name missing from ls --json"

    # checkout: byte-exact copy, links recreated, exec bits and modes
    out = tmp_path / "out"
    cli.run("checkout", "datasets/rt@main", out)
    assert_same_tree(src, out)
    umask = os.umask(0)
    os.umask(umask)
    for rel in execs:
        assert stat.S_IMODE(os.stat(out / rel).st_mode) == 0o755 & ~umask, rel
    assert stat.S_IMODE(os.stat(out / "top.txt").st_mode) == 0o644 & ~umask
    for rel, target in links.items():
        assert os.path.islink(out / rel) and os.readlink(out / rel) == target
    assert (out / "emptydir").is_dir() and not any((out / "emptydir").iterdir())

    # the commit's time is given to files
    t = cli.json("show", "datasets/rt@main")["time"]
    assert int(os.lstat(out / "top.txt").st_mtime) == t

    # a sub-directory, into an existing empty directory
    sub = tmp_path / "sub"
    sub.mkdir()
    cli.run("checkout", "datasets/rt@main:a/b", sub)
    assert_same_tree(src / "a" / "b", sub)

    # a non-empty destination is refused and left alone
    p = cli.fail("checkout", "datasets/rt@main", out)
    assert b"not empty" in p.stderr
    assert_same_tree(src, out)
    # checkout of a file is refused
    cli.fail("checkout", "datasets/rt@main:top.txt", tmp_path / "x")


def test_big_file_256mib(cli, tmp_path, big_file):
    path, digest = big_file
    src = tmp_path / "src"
    src.mkdir()
    os.link(path, src / "big.bin")
    cli.create("models/big")
    cli.commit("models/big", src, "256 MiB")

    # cat streams the whole file; hash while reading
    p = subprocess.Popen([cli.bin, "--store", str(cli.store), "cat", "models/big@main:big.bin"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env)
    h = hashlib.sha256()
    n = 0
    while True:
        b = p.stdout.read(4 * MiB)
        if not b:
            break
        h.update(b)
        n += len(b)
    err = p.stderr.read()
    assert p.wait() == 0, err
    assert n == 256 * MiB
    assert h.hexdigest() == digest

    out = tmp_path / "out"
    cli.run("checkout", "models/big", out)
    assert os.path.getsize(out / "big.bin") == 256 * MiB
    assert sha256_file(out / "big.bin") == digest

    (e,) = cli.json("ls", "models/big@main:big.bin")
    assert e["size"] == 256 * MiB
    du = cli.du("models/big")
    # random bytes do not dedupe: every byte is stored once
    assert du["logical_bytes"] == 256 * MiB
    assert du["stored_bytes"] == 256 * MiB
    assert du["chunks"] >= 256 * MiB // (2 * MiB)


def content_du(cli, repo):
    """du without store_file_bytes (the stat cache may be rewritten by a no-op commit)."""
    du = cli.du(repo)
    del du["store_file_bytes"]
    return du


def test_20000_small_files(cli, tmp_path):
    src = make_small_tree(tmp_path / "src", seed=20000, ndirs=100, per_dir=200)
    made = time.monotonic()
    cli.create("datasets/many")
    head = cli.commit("datasets/many", src, "20k files")
    du1 = content_du(cli, "datasets/many")
    assert du1["commits"] == 1

    out = tmp_path / "out"
    cli.run("checkout", "datasets/many@main", out)
    assert_same_tree(src, out)
    assert len(cli.json("ls", "-r", "datasets/many")) == 20_100

    # unchanged: no new commit, same head printed, nothing more stored
    p = cli.run("commit", "datasets/many", src, "-m", "again")
    assert p.stdout.decode().strip() == head
    assert b"nothing changed" in p.stderr
    assert [c["id"] for c in cli.json("log", "datasets/many")] == [head]
    assert content_du(cli, "datasets/many") == du1

    # once the files are older than the racy window (1 s) the stat cache is
    # filled, and the next commit reads nothing; still the same head
    time.sleep(max(0.0, made + 1.5 - time.monotonic()))
    assert cli.commit("datasets/many", src, "again") == head
    verbose = dict(cli.env, ARTIFS_VERBOSE="1")
    p = cli.run("commit", "datasets/many", src, "-m", "again", env=verbose)
    assert p.stdout.decode().strip() == head
    assert "nothing changed; datasets/many@main: 20000 files" in p.stderr.decode()
    assert "(0 B read, 0 B new)" in p.stderr.decode(), p.stderr
    assert content_du(cli, "datasets/many") == du1

    # one changed file gives one new commit that diff reports exactly
    f = src / "d042" / "f00007.bin"
    f.write_bytes(f.read_bytes() + b"!")
    head2 = cli.commit("datasets/many", src, "one more byte")
    assert head2 != head
    assert cli.text("diff", "datasets/many@" + head, "datasets/many@main") == "M\td042/f00007.bin\n"
    assert cli.cat("datasets/many@main:d042/f00007.bin") == f.read_bytes()


def test_stat_cache_sees_same_size_same_mtime_rewrite(cli, tmp_path):
    src = tmp_path / "src"
    write_random(src / "f.bin", 7, 100_000)
    write_random(src / "g.bin", 8, 1000)
    set_old_mtime(src)
    time.sleep(1.2)  # ctime too must be out of the racy window for the cache to be filled
    cli.create("datasets/sc")
    h1 = cli.commit("datasets/sc", src, "v1")
    p = cli.run("commit", "datasets/sc", src, "-m", "v1", env=dict(cli.env, ARTIFS_VERBOSE="1"))
    assert p.stdout.decode().strip() == h1
    assert "(0 B read, 0 B new)" in p.stderr.decode(), p.stderr  # served by the stat cache
    # same size, mtime put back: only ctime tells
    st = os.stat(src / "f.bin")
    data = bytearray((src / "f.bin").read_bytes())
    data[5000] ^= 0xFF
    (src / "f.bin").write_bytes(data)
    os.utime(src / "f.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    h2 = cli.commit("datasets/sc", src, "v2")
    assert h2 != h1
    assert cli.cat("datasets/sc@main:f.bin") == bytes(data)
    # the executable bit alone is a change too
    os.chmod(src / "g.bin", 0o755)
    h3 = cli.commit("datasets/sc", src, "v3")
    assert h3 != h2
    assert cli.text("diff", f"datasets/sc@{h2}", "datasets/sc@main") == "X\tg.bin\n"


def test_dedupe_between_versions(cli, tmp_path):
    v1 = tmp_path / "v1"
    v2 = tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    base = rand_bytes(64, 64 * MiB)
    ins = rand_bytes(65, 1 * MiB)
    (v1 / "data.bin").write_bytes(base)
    (v2 / "data.bin").write_bytes(base[:32 * MiB] + ins + base[32 * MiB:])
    cli.create("models/dd")
    c1 = cli.commit("models/dd", v1, "v1")
    du1 = cli.du("models/dd")
    assert list(du1) == ["repo", "commits", "logical_bytes", "stored_bytes", "chunks", "dedupe_ratio",
                         "store_file_bytes"]
    assert du1["repo"] == "models/dd" and du1["stored_bytes"] == 64 * MiB
    c2 = cli.commit("models/dd", v2, "v2: 1 MiB inserted in the middle")
    du2 = cli.du("models/dd")
    grown = du2["stored_bytes"] - du1["stored_bytes"]
    assert 1 * MiB <= grown < 8 * MiB, f"stored bytes grew by {grown / MiB:.1f} MiB"
    assert du2["logical_bytes"] == 129 * MiB
    assert du2["commits"] == 2
    assert du2["dedupe_ratio"] > 1.8
    # both versions still read back exactly
    assert cli.cat(f"models/dd@{c1}:data.bin") == base
    assert cli.cat(f"models/dd@{c2[:10]}:data.bin") == (v2 / "data.bin").read_bytes()
    # the whole store agrees with the repository (one repository)
    assert cli.du()["stored_bytes"] == du2["stored_bytes"]
