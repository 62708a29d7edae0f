"""Command line: errors, help, exit codes, skipped special files, store selection."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from clihelpers import Artifs, base_env

COMMANDS = ["init", "create", "repos", "commit", "log", "show", "ls", "cat", "checkout",
            "tag", "branch", "diff", "du", "fsck", "gc"]


def error_text(p):
    err = p.stderr.decode()
    assert err.startswith("artifs: error: "), err
    return err


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_for_every_command(bare, cmd):
    for flag in ("--help", "-h"):
        p = bare.run(cmd, flag, store=False)
        out = p.stdout.decode()
        assert out.startswith(f"usage: artifs {cmd}"), out
        assert p.stderr == b""
    # help works without a store and wherever it is on the line
    assert bare.run(cmd, "x", "--help", store=False).stdout.decode().startswith(f"usage: artifs {cmd}")
    assert bare.run("help", cmd, store=False).stdout.decode().startswith(f"usage: artifs {cmd}")


def test_global_help_usage_and_unknown_command(bare):
    out = bare.run("--help", store=False).stdout.decode()
    assert out.startswith("usage: artifs")
    for cmd in COMMANDS:
        assert f"\n  {cmd} " in out, cmd
    p = bare.run(rc=2, store=False)
    assert p.stdout == b"" and p.stderr.decode().startswith("usage: artifs")
    for bad in ("frobnicate", "Commit", "--bogus"):
        p = bare.fail(bad, rc=2, store=False)
        assert f"unknown command '{bad}'" in error_text(p) and "hint: see 'artifs --help'" in p.stderr.decode()
    assert bare.run("--version", store=False).stdout.startswith(b"artifs ")
    p = bare.run("--store", rc=2, store=False)
    assert b"--store needs a directory" in p.stderr


def test_usage_errors_exit_2(cli, tmp_path):
    cli.create("datasets/u")
    cases = [
        ("log",), ("log", "datasets/u", "--bogus"), ("ls",), ("cat",), ("cat", "datasets/u@main"),
        ("cat", "a", "b"), ("checkout", "datasets/u"), ("commit", "datasets/u"),
        ("commit", "datasets/u", str(tmp_path), "-m", "x", "@main"), ("tag", "datasets/u"),
        ("branch", "datasets/u"), ("diff", "datasets/u"), ("du", "a", "b"), ("fsck", "x"),
        ("gc", "--bogus"), ("repos", "x"), ("init", "x"), ("create", "dataset"), ("create", "thing", "x"),
        ("show",), ("du", "not-a-repo"), ("commit", "datasets/u:path", str(tmp_path), "-m", "x"),
    ]
    for args in cases:
        p = cli.run(*args, rc=2)
        assert "artifs: error: " in p.stderr.decode(), args
        assert p.stdout == b"", args


def test_missing_store(bare, tmp_path):
    for args in (("repos",), ("log", "datasets/x"), ("commit", "datasets/x", str(tmp_path), "-m", "m"),
                 ("fsck",), ("gc",), ("du",), ("create", "dataset", "x")):
        p = bare.fail(*args)
        err = error_text(p)
        assert f"no store at '{bare.store}'" in err, err
        assert "hint: create one with 'artifs init'" in err, err
        assert not (bare.store / "data.mdb").exists(), "a command other than init created the store"
    # a directory that is not a store
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "junk").write_text("x")
    p = Artifs(bare.bin, tmp_path / "notastore", bare.env).fail("repos")
    assert "notastore" in error_text(p)

    # init creates it (parents too); a second init is harmless
    deep = Artifs(bare.bin, tmp_path / "a" / "b" / "store", bare.env)
    assert b"created store" in deep.run("init").stdout
    p = deep.run("init")
    assert b"already exists" in p.stderr
    assert deep.json("repos") == []


def test_bad_repository_names(cli, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("x")
    for name in ("bad name", ".hidden", "-dash", "a/b", "x" * 101, "é", ""):
        error_text(cli.fail("create", "dataset", name))
    for repo in ("foo/bar", "datasets/", "dataset/x", "datasets/a/b"):
        error_text(cli.run("create", repo, rc=None))
        assert cli.run("create", repo, rc=None).returncode in (1, 2)
    for spec in ("foo", "datasets", "things/x", "datasets/bad name"):
        p = cli.run("commit", spec, d, "-m", "x", rc=None)
        assert p.returncode in (1, 2)
        assert "invalid repository" in error_text(p), spec
        assert cli.run("log", spec, rc=None).returncode in (1, 2)
    assert cli.json("repos") == []
    cli.create("datasets/ok")
    p = cli.fail("create", "dataset", "ok")
    assert "already exists" in error_text(p)
    p = cli.fail("commit", "datasets/missing", d, "-m", "x")
    assert "datasets/missing" in error_text(p) and "does not exist" in error_text(p)
    assert [r["name"] for r in cli.json("repos")] == ["datasets/ok"]


def test_missing_or_bad_directory(cli, tmp_path):
    cli.create("datasets/m")
    p = cli.fail("commit", "datasets/m", tmp_path / "nope", "-m", "x")
    assert "nope" in error_text(p)
    f = tmp_path / "file"
    f.write_text("not a dir")
    p = cli.fail("commit", "datasets/m", f, "-m", "x")
    assert "file" in error_text(p)
    # nothing was committed
    assert "no commits" in error_text(cli.fail("log", "datasets/m"))
    # an empty directory is a valid (empty) commit
    (tmp_path / "empty").mkdir()
    c = cli.commit("datasets/m", tmp_path / "empty", "empty")
    assert cli.json("ls", "datasets/m") == []
    assert cli.json("show", "datasets/m")["id"] == c
    out = tmp_path / "out"
    cli.run("checkout", "datasets/m", out)
    assert list(out.iterdir()) == []


def test_fifo_and_socket_are_skipped_with_a_warning(cli, tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "regular.txt").write_bytes(b"kept\n")
    os.mkfifo(d / "pipe")
    os.mkfifo(d / "sub" / "pipe2")
    old = os.getcwd()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(d / "sub")       # socket paths are short; bind relative to the directory
        s.bind("sock")
    finally:
        os.chdir(old)
    try:
        cli.create("datasets/f")
        p = cli.run("commit", "datasets/f", d, "-m", "special files")
    finally:
        s.close()
    err = p.stderr.decode()
    assert "artifs: warning: 'pipe' is a FIFO; skipped" in err, err
    assert "artifs: warning: 'sub/pipe2' is a FIFO; skipped" in err, err
    assert "artifs: warning: 'sub/sock' is a socket; skipped" in err, err
    assert "error" not in err
    assert [e["path"] for e in cli.json("ls", "-r", "datasets/f")] == ["regular.txt", "sub"]
    assert cli.cat("datasets/f:regular.txt") == b"kept\n"


def test_store_selection(artifs_bin, tmp_path):
    """--store beats $ARTIFS_STORE beats $XDG_DATA_HOME/artifs beats ~/.local/share/artifs."""
    env = base_env(tmp_path)
    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    places = {
        "flag": tmp_path / "flag-store",
        "env": tmp_path / "env-store",
        "xdg": xdg / "artifs",
        "home": home / ".local" / "share" / "artifs",
    }
    # init through each rule, so init itself follows the same precedence
    def run(*args, flag=None, store_env=None, xdg_env=None, rc=0):
        e = dict(env)
        if store_env is not None:
            e["ARTIFS_STORE"] = str(store_env)
        if xdg_env is not None:
            e["XDG_DATA_HOME"] = str(xdg_env)
        cmd = [str(artifs_bin)] + (["--store", str(flag)] if flag else []) + list(args)
        p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode == rc, (args, p.stderr)
        return p

    run("init")
    assert (places["home"] / "data.mdb").exists()
    run("init", xdg_env=xdg)
    assert (places["xdg"] / "data.mdb").exists()
    run("init", store_env=places["env"], xdg_env=xdg)
    run("init", flag=places["flag"], store_env=places["env"], xdg_env=xdg)
    for name, path in places.items():
        assert (path / "data.mdb").exists(), name
        run("create", "dataset", name, flag=path)

    def which(**kw):
        repos = json.loads(run("repos", "--json", **kw).stdout)
        assert len(repos) == 1
        return repos[0]["name"].split("/")[1]

    assert which(flag=places["flag"], store_env=places["env"], xdg_env=xdg) == "flag"
    assert which(store_env=places["env"], xdg_env=xdg) == "env"
    assert which(xdg_env=xdg) == "xdg"
    assert which() == "home"
    assert which(store_env="", xdg_env=xdg) == "xdg"          # empty means unset
    assert which(xdg_env="relative/dir") == "home"             # XDG paths must be absolute
    # --store=DIR and --store after the command
    e = dict(env, ARTIFS_STORE=str(places["env"]))
    for argv in (["--store=" + str(places["flag"]), "repos", "--json"],
                 ["repos", "--store", str(places["flag"]), "--json"]):
        p = subprocess.run([str(artifs_bin)] + argv, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)[0]["name"] == "datasets/flag"
    # no HOME at all and nothing else: a clear error
    e = {k: v for k, v in env.items() if k != "HOME"}
    p = subprocess.run([str(artifs_bin), "repos"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 1 and p.stderr.startswith(b"artifs: error: no store given")


def test_store_inside_the_committed_directory_is_skipped(artifs_bin, tmp_path, env):
    d = tmp_path / "d"
    d.mkdir()
    (d / "f.txt").write_bytes(b"data\n")
    cli = Artifs(artifs_bin, d / "store", env).init()
    cli.create("datasets/self")
    p = cli.run("commit", "datasets/self", d, "-m", "contains its own store")
    assert "artifs: warning: 'store' is the store itself; skipped" in p.stderr.decode()
    assert [e["path"] for e in cli.json("ls", "-r", "datasets/self")] == ["f.txt"]


def _as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to another user: run as root (CI does)")
def test_store_read_by_another_user(artifs_bin, env, tmp_path):
    """
    A store one account writes and others read: reading needs lock.mdb
    writable (LMDB's table of readers, which keeps the writer from reusing
    pages a reader still sees), not data.mdb.  Without it the error says so.
    """
    shared = Path(tempfile.mkdtemp(prefix="artifs-shared-"))
    try:
        os.chmod(shared, 0o755)
        binary = shared / "artifs"          # where the other user can run it
        shutil.copy2(artifs_bin, binary)
        owner = Artifs(binary, shared / "store", env).init()
        owner.create("datasets/d")
        src = shared / "src"
        src.mkdir()
        (src / "a.txt").write_bytes(b"first\n")
        c1 = owner.commit("datasets/d", src, "one")
        for root, dirs, files in os.walk(shared / "store"):
            for n in dirs + files:
                os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)

        def reader(*args):
            return subprocess.run([str(binary), "--store", str(shared / "store"), *args],
                                  env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}, cwd="/",
                                  preexec_fn=_as_nobody, capture_output=True, timeout=120)

        p = reader("log", "datasets/d")
        assert p.returncode == 1, p
        err = p.stderr.decode()
        assert "Permission denied" in err and "lock.mdb" in err, err

        os.chmod(shared / "store" / "lock.mdb", 0o666)
        p = reader("log", "datasets/d")
        assert p.returncode == 0 and c1 in p.stdout.decode(), p
        assert reader("cat", "datasets/d:a.txt").stdout == b"first\n"
        # the owner writes on; the reader sees the new version
        (src / "a.txt").write_bytes(b"second\n" * 100_000)
        c2 = owner.commit("datasets/d", src, "two")
        assert reader("cat", "datasets/d:a.txt").stdout == b"second\n" * 100_000
        assert c2 in reader("log", "datasets/d").stdout.decode()
        assert reader("fsck").returncode == 0
        # writing is the owner's
        p = reader("create", "datasets/other")
        assert p.returncode == 1 and "Permission denied" in p.stderr.decode(), p
        assert owner.json("repos")[0]["name"] == "datasets/d" and len(owner.json("repos")) == 1
    finally:
        shutil.rmtree(shared, ignore_errors=True)
