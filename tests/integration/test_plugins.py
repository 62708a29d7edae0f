"""libgit2, libarchive and libcurl are loaded only by the commands that use them.

The artifs binary links none of them (with their dependencies they cost
every command 6-7 ms warm and a mount's start 50 ms cold): `ldd` must not
list them, and each module must.  The modules are found next to the binary
(the build tree) and in an installed tree (`cmake --install`); a binary
copied without them runs whatever needs none, and a command that needs one
fails naming it, changing nothing.
"""

import json
import shutil
import subprocess
import tarfile

from clihelpers import Artifs, write_random

MODULES = (("archive", "libarchive"), ("git", "libgit2"), ("s3", "libcurl"))
REPO = "datasets/plug"


def ldd(path):
    return subprocess.run(["ldd", str(path)], stdout=subprocess.PIPE, check=True,
                          text=True).stdout


def make_data(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    write_random(src / "a.bin", 1, 300_000)
    write_random(src / "sub" / "b.bin", 2, 5_000)
    tgz = tmp_path / "data.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(src, arcname=".")
    return src, tgz


def test_binary_links_none_of_the_large_libraries(artifs_bin):
    out = ldd(artifs_bin)
    for mod, lib in MODULES:
        assert lib not in out, f"artifs links {lib}:\n{out}"
        mod_out = ldd(artifs_bin.parent / f"artifs-{mod}.so")
        assert lib in mod_out, f"artifs-{mod}.so does not link {lib}:\n{mod_out}"


def test_binary_without_modules_names_the_missing_one(artifs_bin, tmp_path, env):
    lone = tmp_path / "lone" / "artifs"
    lone.parent.mkdir()
    shutil.copy2(artifs_bin, lone)
    src, tgz = make_data(tmp_path)
    a = Artifs(lone, tmp_path / "store", env).init()
    a.run("create", "dataset", "plug")
    head = a.text("commit", REPO, src, "-m", "a directory needs no module").strip()

    p = a.fail("commit", REPO, tgz, "-m", "an archive needs libarchive")
    assert b"artifs-archive.so" in p.stderr, p.stderr
    p = a.fail("export", REPO + "@main", "-o", tmp_path / "out.tar")
    assert b"artifs-archive.so" in p.stderr, p.stderr
    assert not (tmp_path / "out.tar").exists() or (tmp_path / "out.tar").stat().st_size == 0
    p = a.fail("config", "gitops.url", str(tmp_path / "gitops"))
    assert b"artifs-git.so" in p.stderr, p.stderr
    # nothing moved
    assert a.text("log", REPO, "-n", "5").count("\ncommit ") == 0
    assert a.text("show", REPO + "@main").split()[1] == head


def test_installed_tree_finds_its_modules(artifs_bin, tmp_path, env):
    build = artifs_bin.parent.parent
    assert (build / "CMakeCache.txt").exists(), f"{build} is not the build tree of {artifs_bin}"
    prefix = tmp_path / "inst"
    subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)],
                   stdout=subprocess.PIPE, check=True)
    exe = prefix / "bin" / "artifs"
    src, tgz = make_data(tmp_path)
    a = Artifs(exe, tmp_path / "store", env).init()
    a.run("create", "dataset", "plug")
    from_dir = a.text("show", REPO + "@" + a.text("commit", REPO, src, "-m", "dir").strip(),
                      "--json")
    from_tgz = a.text("show", REPO + "@" + a.text("commit", REPO, tgz, "-m", "tgz",
                                                  "--allow-empty").strip(), "--json")
    assert json.loads(from_dir)["tree"] == json.loads(from_tgz)["tree"]
    a.run("export", REPO + "@main", "-o", tmp_path / "out.tar")
    names = subprocess.run(["tar", "tf", str(tmp_path / "out.tar")], stdout=subprocess.PIPE,
                           check=True, text=True).stdout.split()
    assert any(n.endswith("sub/b.bin") for n in names), names
    a.run("config", "hooks.timeout", "42")
    assert a.text("config", "hooks.timeout").strip() == "42"
