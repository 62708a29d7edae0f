"""Archives in and out: `artifs commit REPO ARCHIVE` and `artifs export REPO@REF -o OUT`.

Round trips against the system tools (GNU tar, bsdtar, unzip, zstd, xz):
artifs' exports extracted by them compare byte for byte (and exec bit, link
target) with the source directory; their archives imported by artifs give
the tree id that committing the directory gives.  Then --strip-components,
stdin, determinism, subpaths, labels, and every hostile member refused with
its name and the branch left where it was.

Hostile archives are built with Python's tarfile / zipfile, so each one holds
exactly the member under test.
"""

import io
import os
import random
import shutil
import stat
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from clihelpers import MiB, Artifs, assert_same_tree, base_env, write_random

REPO = "datasets/arch"
TOOLS = ("tar", "bsdtar", "unzip", "zstd", "xz", "gzip", "cmp", "diff")

# 255 bytes: the longest name a tree (and ext4) holds
LONG_ASCII = "n" * 251 + ".txt"
LONG_UTF8 = "é" * 127 + "x"             # 127 * 2 + 1 = 255 bytes
assert len(LONG_ASCII.encode()) == 255 and len(LONG_UTF8.encode()) == 255


# ---- fixtures and helpers --------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def tools():
    """The tools are part of the test setup (tests/deps.sh installs them): missing is a failure."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"missing tools {missing}: run tests/deps.sh"


def build_tree(root, big=0, seed=11):
    """Nested dirs, an empty dir, an executable, symlinks inside the tree, a hard link,
    a 255-byte name, an empty file, and (when big) one big random file.  ASCII names:
    unicode has tests of its own so that a failure there does not hide the rest."""
    r = random.Random(seed)
    root = Path(root)
    for rel in ("nested/a/b/c/deep.txt", "nested/a/one.bin", "nested/two.bin", "top.txt",
                f"nested/{LONG_ASCII}", "dup/x.bin", "dup/y.bin"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(r.randbytes(r.randrange(1, 70000)))
    (root / "dup/y.bin").write_bytes((root / "dup/x.bin").read_bytes())   # same content
    (root / "empty").mkdir()
    (root / "nested/a/b/empty2").mkdir()
    (root / "empty.dat").write_bytes(b"")
    run = root / "bin/run.sh"
    run.parent.mkdir()
    run.write_bytes(b"#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    (root / "nested/a/link").symlink_to("../two.bin")
    (root / "nested/dirlink").symlink_to("a/b")
    (root / "toplink").symlink_to("nested/a/b/c/deep.txt")
    os.link(root / "top.txt", root / "hard.txt")
    if big:
        write_random(root / "data/big.bin", 2024, big)
    return root


def unicode_tree(root):
    root = Path(root)
    (root / "日本/データ").mkdir(parents=True)
    (root / "héllo wörld ✓.txt").write_bytes(b"unicode\n")
    (root / "日本/データ/ß.bin").write_bytes(b"x" * 1000)
    (root / "日本" / LONG_UTF8).write_bytes(b"long\n")
    (root / "lien→").symlink_to("日本/データ/ß.bin")
    return root


def tree_id(cli, repo, ref="main"):
    return cli.json("show", f"{repo}@{ref}")["tree"]


def commit_dir_tree(cli, src, repo="datasets/dirref"):
    """The tree id committing the directory gives (the reference for imports)."""
    cli.create(repo)
    cli.commit(repo, src, "dir")
    return tree_id(cli, repo)


_n = [0]


def assert_tree(cli, repo, want, what):
    """repo's head has tree `want` (datasets/dirref's); else say which paths differ."""
    got = tree_id(cli, repo)
    if got != want:
        diff = cli.run("diff", "datasets/dirref@main", f"{repo}@main", rc=None)
        raise AssertionError(f"{what}: tree {got} != directory's {want}; artifs diff:\n"
                             f"{diff.stdout.decode(errors='replace')[:2000]}")


def fresh_repo(cli, prefix="imp"):
    _n[0] += 1
    repo = f"datasets/{prefix}{_n[0]}"
    cli.create(repo)
    return repo


def sh(*args, cwd=None, input=None):
    p = subprocess.run([str(a) for a in args], cwd=cwd, input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, f"{args}: exit {p.returncode}\n{p.stderr.decode(errors='replace')}"
    return p.stdout


def extract(tool, archive, dest):
    dest.mkdir(parents=True)
    if tool == "gnutar":
        sh("tar", "-xf", archive, "-C", dest)
    elif tool == "bsdtar":
        sh("bsdtar", "-xf", archive, "-C", dest)
    elif tool == "unzip":
        sh("unzip", "-q", archive, "-d", dest)
    else:
        raise AssertionError(tool)
    return dest


def tree_order(root, rel=b""):
    """Member names in tree order: bytewise-sorted siblings, a directory before its contents."""
    out = []
    base = os.path.join(os.fsencode(str(root)), rel) if rel else os.fsencode(str(root))
    for n in sorted(os.listdir(base)):
        r = os.path.join(rel, n) if rel else n
        out.append(r)
        full = os.path.join(base, n)
        if os.path.isdir(full) and not os.path.islink(full):
            out.extend(tree_order(root, r))
    return out


def err(p):
    return p.stderr.decode("utf-8", "replace")


# A small tree for the import matrix (no big file: xz and 7z of 20 MiB are slow).
@pytest.fixture(scope="module")
def small_src(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    return build_tree(d / "src")


# The export tree: everything plus a 20 MiB file, committed once per module.
@pytest.fixture(scope="module")
def exported(artifs_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("exported")
    src = build_tree(d / "src", big=20 * MiB)
    cli = Artifs(artifs_bin, d / "store", base_env(d)).init()
    cli.create(REPO)
    cid = cli.commit(REPO, src, "v1")
    return cli, src, cid, d


# ---- export, extracted by the system tools -----------------------------------------------

ROUND_TRIPS = [
    ("tar", "gnutar"), ("tar", "bsdtar"),
    ("tar.gz", "gnutar"), ("tar.gz", "bsdtar"),
    ("tar.zst", "gnutar"), ("tar.zst", "bsdtar"),
    ("zip", "bsdtar"), ("zip", "unzip"),
]


@pytest.mark.parametrize("fmt,tool", ROUND_TRIPS, ids=[f"{f}-{t}" for f, t in ROUND_TRIPS])
def test_export_extracted_by_tool_matches_source(exported, tmp_path, fmt, tool):
    cli, src, cid, _ = exported
    out = tmp_path / f"v.{fmt}"
    cli.run("export", f"{REPO}@main", "-o", out)
    dest = extract(tool, out, tmp_path / "x")
    # bytes, exec bit, link targets, empty dirs, the 255-byte name, the empty file
    assert_same_tree(src, dest)
    assert (dest / "bin/run.sh").stat().st_mode & 0o111
    assert not (dest / "top.txt").stat().st_mode & 0o111
    assert os.readlink(dest / "nested/a/link") == "../two.bin"
    assert (dest / "data/big.bin").stat().st_size == 20 * MiB


def test_export_tar_metadata_is_normalised(exported, tmp_path):
    cli, src, cid, _ = exported
    t = cli.json("show", f"{REPO}@main")["time"]
    out = tmp_path / "v.tar"
    cli.run("export", f"{REPO}@main", "-o", out)
    with tarfile.open(out) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == [os.fsdecode(n) for n in tree_order(src)], "members are not in tree order"
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "root", "root"), m.name
        assert m.mtime == t, (m.name, m.mtime, t)
        if m.isdir():
            assert m.mode & 0o7777 == 0o755, m.name
        elif m.issym():
            assert m.mode & 0o7777 == 0o777, m.name
        else:
            assert m.isfile(), f"{m.name}: type {m.type!r}"    # the hard link is a plain file
            want = 0o755 if m.name == "bin/run.sh" else 0o644
            assert m.mode & 0o7777 == want, (m.name, oct(m.mode))


def test_export_zip_metadata_is_utc_and_host_independent(exported, tmp_path):
    cli, src, cid, _ = exported
    t = cli.json("show", f"{REPO}@main")["time"]
    outs = []
    for tz in ("UTC", "Asia/Tokyo", "America/St_Johns"):
        out = tmp_path / f"v-{tz.replace('/', '_')}.zip"
        cli.run("export", f"{REPO}@main", "-o", out, env={**cli.env, "TZ": tz})
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2], "zip bytes depend on the host's time zone"
    with zipfile.ZipFile(io.BytesIO(outs[0])) as z:
        infos = z.infolist()
    want = time.gmtime(t)[:6]
    want = want[:5] + (want[5] - want[5] % 2,)      # DOS time: 2-second resolution
    for i in infos:
        assert i.date_time == want, (i.filename, i.date_time, want)
    assert [i.filename.rstrip("/") for i in infos] == [os.fsdecode(n) for n in tree_order(src)]


def test_export_gzip_header_has_no_timestamp(exported, tmp_path):
    cli, *_ = exported
    out = tmp_path / "v.tar.gz"
    cli.run("export", f"{REPO}@main", "-o", out)
    head = out.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08" and head[4:8] == b"\0\0\0\0", head.hex()


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "tar.zst", "zip"])
def test_export_reimport_gives_the_same_tree(exported, tmp_path, fmt):
    cli, src, cid, _ = exported
    out = tmp_path / f"v.{fmt}"
    cli.run("export", f"{REPO}@main", "-o", out)
    repo = fresh_repo(cli, "re")
    cli.commit(repo, out, "reimport")
    assert tree_id(cli, repo) == tree_id(cli, REPO)


def test_export_is_deterministic(exported, tmp_path):
    cli, src, cid, d = exported
    first = {}
    for fmt in ("tar", "tar.gz", "tar.zst", "zip"):
        a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        cli.run("export", f"{REPO}@main", "-o", a)
        time.sleep(1.1 if fmt == "tar" else 0)     # a second later: no wall-clock time leaks in
        cli.run("export", f"{REPO}@main", "-o", b)
        sh("cmp", a, b)
        first[fmt] = a.read_bytes()
    # an unrelated commit on another branch changes nothing
    cli.run("branch", REPO, "other")
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_bytes(b"other branch\n")
    cli.commit(f"{REPO}@other", other, "unrelated")
    for fmt in ("tar", "tar.gz", "tar.zst", "zip"):
        c = tmp_path / f"c.{fmt}"
        cli.run("export", f"{REPO}@main", "-o", c)
        assert c.read_bytes() == first[fmt], f"{fmt}: bytes changed after a commit to another branch"
    # and the version named by its commit id gives the same bytes as the branch
    c = tmp_path / "byid.tar"
    cli.run("export", f"{REPO}@{cid}", "-o", c)
    assert c.read_bytes() == first["tar"]


def test_export_subpath(exported, tmp_path):
    cli, src, cid, _ = exported
    out = tmp_path / "sub.tar"
    cli.run("export", f"{REPO}@main:nested", "-o", out)
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert names == [os.fsdecode(n) for n in tree_order(src / "nested")]
    assert not any(n.startswith("nested") for n in names)
    dest = extract("gnutar", out, tmp_path / "x")
    assert_same_tree(src / "nested", dest)
    # a deeper one, as zip
    out = tmp_path / "sub.zip"
    cli.run("export", f"{REPO}@main:nested/a", "-o", out)
    assert_same_tree(src / "nested/a", extract("unzip", out, tmp_path / "y"))


def test_export_to_stdout(exported, tmp_path):
    cli, *_ = exported
    f = tmp_path / "v.tar"
    cli.run("export", f"{REPO}@main", "-o", f)
    p = cli.run("export", f"{REPO}@main", "-o", "-")
    assert p.stdout == f.read_bytes(), "-o - is not the same tar as -o FILE.tar"
    for fmt in ("tar.gz", "tar.zst", "zip"):
        f = tmp_path / f"v.{fmt}"
        cli.run("export", f"{REPO}@main", "-o", f)
        p = cli.run("export", f"{REPO}@main", "-o", "-", "--format", fmt)
        assert p.stdout == f.read_bytes(), f"-o - --format {fmt} differs from -o FILE.{fmt}"
    assert not list(tmp_path.glob("*.tmp-*"))


def test_export_overwrites_atomically_and_leaves_nothing_on_error(exported, tmp_path):
    cli, src, cid, _ = exported
    out = tmp_path / "out.tar"
    out.write_bytes(b"old contents")
    ino = out.stat().st_ino
    cli.run("export", f"{REPO}@main", "-o", out)
    assert out.stat().st_ino != ino, "OUT was rewritten in place, not replaced by a rename"
    with tarfile.open(out) as tf:
        assert "top.txt" in tf.getnames()
    good = out.read_bytes()

    # errors: a missing ref, a missing path, a path that is a file; OUT stays as it was
    for spec in (f"{REPO}@nosuchbranch", f"{REPO}@main:nosuchdir", f"{REPO}@main:top.txt",
                 "datasets/nosuchrepo@main"):
        p = cli.fail("export", spec, "-o", out)
        assert out.read_bytes() == good, spec
        missing = tmp_path / "new.tar"
        p = cli.fail("export", spec, "-o", missing)
        assert not missing.exists(), f"{spec}: a failed export left {missing}"
        assert not list(tmp_path.glob("*.tmp-*")), f"{spec}: a temporary file was left behind"
    # a name that says no format: usage error, nothing written
    p = cli.run("export", f"{REPO}@main", "-o", tmp_path / "out.rar", rc=2)
    assert ".tar" in err(p)
    assert not (tmp_path / "out.rar").exists()
    p = cli.run("export", f"{REPO}@main", "-o", tmp_path / "o.tar", "--format", "rar", rc=2)
    assert not (tmp_path / "o.tar").exists()


# ---- archives made by the tools, imported ------------------------------------------------

def make_with(kind, src, out):
    if kind == "gnutar":
        sh("tar", "-cf", out, "-C", src, ".")
    elif kind == "gnutar-noprefix":     # members without "./"
        sh("tar", "-cf", out, "-C", src, *sorted(os.listdir(src)))
    elif kind == "gnutar-gz":
        sh("tar", "-czf", out, "-C", src, ".")
    elif kind == "gnutar-zst":
        sh("tar", "--zstd", "-cf", out, "-C", src, ".")
    elif kind == "gnutar-xz":
        sh("tar", "-cJf", out, "-C", src, ".")
    elif kind == "gnutar-pax":
        sh("tar", "--format=pax", "-cf", out, "-C", src, ".")
    elif kind == "bsdtar":
        sh("bsdtar", "-cf", out, "-C", src, ".")
    elif kind == "bsdtar-zip":
        sh("bsdtar", "-cf", out, "--format=zip", "-C", src, ".")
    elif kind == "bsdtar-7zip":
        sh("bsdtar", "-cf", out, "--format=7zip", "-C", src, ".")
    elif kind == "bsdtar-cpio":
        sh("bsdtar", "-cf", out, "--format=cpio", "-C", src, ".")
    elif kind == "bsdtar-newc":
        sh("bsdtar", "-cf", out, "--format=newc", "-C", src, ".")
    else:
        raise AssertionError(kind)
    return out


IMPORTS = ["gnutar", "gnutar-noprefix", "gnutar-gz", "gnutar-zst", "gnutar-xz", "gnutar-pax",
           "bsdtar", "bsdtar-zip", "bsdtar-7zip", "bsdtar-cpio", "bsdtar-newc"]


@pytest.mark.parametrize("kind", IMPORTS)
def test_import_tool_archive_gives_directory_tree(cli, small_src, tmp_path, kind):
    want = commit_dir_tree(cli, small_src)
    a = make_with(kind, small_src, tmp_path / f"a.{kind}")
    repo = fresh_repo(cli)
    cli.commit(repo, a, "import")
    assert_tree(cli, repo, want, kind)


@pytest.mark.parametrize("kind", ["gnutar", "gnutar-gz", "gnutar-zst", "bsdtar-zip"])
def test_import_from_stdin(cli, small_src, tmp_path, kind):
    want = commit_dir_tree(cli, small_src)
    a = make_with(kind, small_src, tmp_path / f"a.{kind}")
    repo = fresh_repo(cli)
    p = cli.run("commit", repo, "-", "-m", "stdin", input=a.read_bytes())
    assert p.stdout.decode().strip() == cli.head(repo)
    assert_tree(cli, repo, want, f"{kind} from a pipe")


def test_newc_cpio_hard_link_keeps_its_data(cli, tmp_path):
    """newc cpio stores a hard-linked file's data with the LAST of its links; the earlier
    ones are empty headers.  Both names must end up with the data."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"payload\n")
    os.link(src / "a", src / "b")
    a = make_with("bsdtar-newc", src, tmp_path / "x.cpio")
    repo = fresh_repo(cli)
    cli.commit(repo, a, "newc")
    assert cli.cat(f"{repo}@main:a") == b"payload\n"
    assert cli.cat(f"{repo}@main:b") == b"payload\n"


def test_strip_components(cli, small_src, tmp_path):
    want = commit_dir_tree(cli, small_src)
    wrap = tmp_path / "wrap"
    shutil.copytree(small_src, wrap / "top" / "pkg-1.0", symlinks=True)
    (wrap / "top" / "README").write_bytes(b"dropped by --strip-components 2\n")
    a = tmp_path / "w.tar.gz"
    sh("tar", "-czf", a, "-C", wrap / "top", "pkg-1.0")
    repo = fresh_repo(cli)
    cli.commit(repo, a, "strip", "--strip-components", "1")
    assert tree_id(cli, repo) == want
    # two levels: the top-level file has too few components and is skipped, as tar does
    b = tmp_path / "w2.tar"
    sh("tar", "-cf", b, "-C", wrap, "top")
    repo = fresh_repo(cli)
    cli.commit(repo, b, "strip2", "--strip-components", "2")
    assert tree_id(cli, repo) == want
    # --strip-components wants an archive
    p = cli.run("commit", repo, small_src, "-m", "x", "--strip-components", "1", rc=2)
    assert "archive" in err(p)


def test_unicode_and_long_names_import(cli, tmp_path):
    src = unicode_tree(tmp_path / "src")
    want = commit_dir_tree(cli, src)
    bad = []
    for kind in ("gnutar", "gnutar-pax", "bsdtar", "bsdtar-zip", "bsdtar-7zip", "bsdtar-cpio"):
        a = make_with(kind, src, tmp_path / f"u.{kind}")
        repo = fresh_repo(cli, "u")
        p = cli.run("commit", repo, a, "-m", "u", rc=None)
        if p.returncode != 0:
            bad.append(f"{kind}: exit {p.returncode}: {err(p).strip()}")
        elif tree_id(cli, repo) != want:
            bad.append(f"{kind}: tree differs from the directory's")
    assert not bad, "unicode names:\n" + "\n".join(bad)


@pytest.mark.parametrize("fmt,tool", [("tar", "gnutar"), ("tar.gz", "bsdtar"), ("zip", "unzip")])
def test_unicode_and_long_names_export(cli, tmp_path, fmt, tool):
    src = unicode_tree(tmp_path / "src")
    cli.create(REPO)
    cli.commit(REPO, src, "u")
    out = tmp_path / f"u.{fmt}"
    cli.run("export", f"{REPO}@main", "-o", out)
    assert_same_tree(src, extract(tool, out, tmp_path / "x"))


# ---- labels ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_labels_travel_with_the_archive(artifs_bin, cli, small_src, tmp_path, fmt):
    cli.create(REPO)
    cli.commit(REPO, small_src, "v1")
    cli.run("label", "set", REPO, "top.txt", "class=cat", "split=train")
    cli.run("label", "set", REPO, "nested/a", "source=scan", "note=hé, ✓")
    want = cli.json("label", "show", f"{REPO}@main")
    assert want, "no labels were set"
    out = tmp_path / f"l.{fmt}"
    cli.run("export", f"{REPO}@main", "-o", out)
    if fmt == "tar":
        with tarfile.open(out) as tf:
            names = tf.getnames()
    else:
        with zipfile.ZipFile(out) as z:
            names = z.namelist()
    assert names[0] == ".labels.jsonl", names[:3]
    assert names.count(".labels.jsonl") == 1

    # into another store
    other = Artifs(artifs_bin, tmp_path / "store2", cli.env).init()
    other.create("datasets/copy")
    other.commit("datasets/copy", out, "imported")
    assert other.json("label", "show", "datasets/copy@main") == want
    assert tree_id(other, "datasets/copy") == tree_id(cli, REPO)
    assert ".labels.jsonl" not in other.text("ls", "datasets/copy@main").split()
    # a subpath export carries no labels member
    sub = tmp_path / f"s.{fmt}"
    cli.run("export", f"{REPO}@main:nested", "-o", sub)
    if fmt == "tar":
        with tarfile.open(sub) as tf:
            assert ".labels.jsonl" not in tf.getnames()


def test_version_with_a_labels_jsonl_file_exports_one_member(cli, tmp_path):
    """A version whose root holds a regular file named .labels.jsonl (committed from a
    directory) and has labels: the export must not hold two members of that name."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a\n")
    (src / ".labels.jsonl").write_bytes(b'{"path": "a", "labels": {"from": "file"}}\n')
    cli.create(REPO)
    cli.commit(REPO, src, "v1")
    cli.run("label", "set", REPO, "a", "k=v")
    out = tmp_path / "l.tar"
    cli.run("export", f"{REPO}@main", "-o", out)
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert names.count(".labels.jsonl") == 1, f"duplicate members in artifs' own export: {names}"


def test_bad_labels_member_is_refused(cli, tmp_path):
    repo, head = committed(cli, tmp_path)
    a = make_tar(tmp_path / "l.tar", [F("a", b"a"), F(".labels.jsonl", b"{not json\n")])
    p = cli.fail("commit", repo, a, "-m", "x")
    assert ".labels.jsonl" in err(p)
    assert cli.head(repo) == head


def test_labels_member_with_unknown_path_names_the_member(cli, tmp_path):
    """As `--labels FILE` says "FILE: refused, nothing changed: line 1: ...", the archive's
    labels member must be named when its edits are refused."""
    repo, head = committed(cli, tmp_path)
    a = make_tar(tmp_path / "l.tar", [F("a", b"a"), F(".labels.jsonl",
                                       b'{"path": "nothere", "labels": {"k": "v"}}\n')])
    p = cli.fail("commit", repo, a, "-m", "x")
    assert "nothere" in err(p)
    assert ".labels.jsonl" in err(p), err(p)
    assert cli.head(repo) == head


# ---- hostile archives --------------------------------------------------------------------

def F(name, data=b"", mode=0o644):
    return dict(name=name, type=tarfile.REGTYPE, data=data, mode=mode)


def L(name, target):
    return dict(name=name, type=tarfile.SYMTYPE, link=target)


def H(name, target):
    return dict(name=name, type=tarfile.LNKTYPE, link=target)


def D(name):
    return dict(name=name, type=tarfile.DIRTYPE)


def S(name, kind):
    return dict(name=name, type=kind)


def make_tar(path, members, fmt=tarfile.PAX_FORMAT, mode="w"):
    with tarfile.open(path, mode, format=fmt) as tf:
        for m in members:
            ti = tarfile.TarInfo(m["name"])
            ti.type = m["type"]
            ti.linkname = m.get("link", "")
            ti.mode = m.get("mode", 0o755 if m["type"] == tarfile.DIRTYPE else 0o644)
            ti.mtime = 1700000000
            if m["type"] == tarfile.REGTYPE:
                ti.size = len(m["data"])
                tf.addfile(ti, io.BytesIO(m["data"]))
            else:
                tf.addfile(ti)
    return path


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for m in members:
            zi = zipfile.ZipInfo(m["name"], date_time=(2024, 1, 1, 0, 0, 0))
            zi.create_system = 3
            if m["type"] == tarfile.SYMTYPE:
                zi.external_attr = (stat.S_IFLNK | 0o777) << 16
                z.writestr(zi, m["link"])
            else:
                zi.external_attr = (stat.S_IFREG | 0o644) << 16
                z.writestr(zi, m.get("data", b""))
    return path


def committed(cli, tmp_path):
    """A repository with one commit; returns (repo, head)."""
    src = tmp_path / "good"
    src.mkdir(exist_ok=True)
    (src / "keep.txt").write_bytes(b"keep\n")
    repo = fresh_repo(cli, "h")
    head = cli.commit(repo, src, "good")
    return repo, head


DEEP = "/".join(["p" * 200] * 21)          # 4220 bytes
HOSTILE = {
    # id: (members, the text stderr must name)
    "absolute-path": ([F("ok", b"1"), F("/etc/evil", b"x")], "/etc/evil"),
    "dotdot-leading": ([F("../evil", b"x")], "../evil"),
    "dotdot-inside": ([D("a"), F("a/../../evil", b"x")], "a/../../evil"),
    "dotdot-harmless-looking": ([F("a/b/../c", b"x")], "a/b/../c"),
    "symlink-absolute": ([L("passwd", "/etc/passwd")], "passwd"),
    "symlink-climbs-out": ([D("a"), L("a/l", "../../x")], "a/l"),
    "symlink-climbs-out-midway": ([L("l", "a/../../x")], "'l'"),
    "symlink-to-dotdot": ([L("up", "..")], "up"),
    "hardlink-missing": ([F("a", b"x"), H("h", "nothere")], "'h'"),
    "hardlink-to-later": ([H("h", "later"), F("later", b"x")], "'h'"),
    "hardlink-to-dir": ([D("d"), H("h", "d")], "'h'"),
    "hardlink-absolute": ([H("h", "/etc/passwd")], "'h'"),
    "duplicate-file": ([F("f", b"1"), F("f", b"2")], "'f'"),
    "duplicate-dot-slash": ([F("f", b"1"), F("./f", b"2")], "./f"),
    "duplicate-dir-then-file": ([D("d"), F("d", b"2")], "'d'"),
    "file-then-dir": ([F("d", b"1"), D("d")], "'d'"),
    "file-then-child": ([F("d", b"1"), F("d/x", b"2")], "d/x"),
    "duplicate-link": ([L("l", "a"), F("a", b"1"), L("l", "a")], "'l'"),
    "char-device": ([S("dev/null", tarfile.CHRTYPE)], "dev/null"),
    "block-device": ([S("sda", tarfile.BLKTYPE)], "sda"),
    "fifo": ([S("pipe", tarfile.FIFOTYPE)], "pipe"),
    "name-256-bytes": ([F("d/" + "n" * 256, b"x")], "nnnnnnnnnnnnnnnnnnnn"),
    "name-256-bytes-utf8": ([F("é" * 128, b"x")], "éééééééééé"),
    "path-over-4096": ([F(DEEP, b"x")], "pppppppppppppppppppp"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_tar_is_refused(cli, tmp_path, case):
    members, named = HOSTILE[case]
    repo, head = committed(cli, tmp_path)
    a = make_tar(tmp_path / f"{case}.tar", members)
    p = cli.fail("commit", repo, a, "-m", "hostile")
    assert named in err(p), f"{case}: the member is not named: {err(p)!r}"
    assert cli.head(repo) == head, f"{case}: the branch moved"
    # from stdin too
    p = cli.fail("commit", repo, "-", "-m", "hostile", input=a.read_bytes())
    assert named in err(p)
    assert cli.head(repo) == head


def test_limits_are_inclusive(cli, tmp_path):
    """255-byte names and a 4096-byte path are fine."""
    repo, head = committed(cli, tmp_path)
    path4096 = "/".join(["q" * 255] * 15 + ["r" * 200, "s" * 55])   # 17 names, 16 slashes
    assert len(path4096) == 4096
    a = make_tar(tmp_path / "ok.tar", [F("n" * 255, b"x"), F(LONG_UTF8, b"y"), F(path4096, b"z")])
    cli.commit(repo, a, "limits")
    assert cli.cat(f"{repo}@main:{'n' * 255}") == b"x"
    assert cli.cat(f"{repo}@main:{path4096}") == b"z"


def test_symlinks_inside_the_tree_are_accepted(cli, tmp_path):
    repo, head = committed(cli, tmp_path)
    a = make_tar(tmp_path / "ok.tar", [D("a"), D("a/b"), F("f", b"x"), L("a/b/l", "../../f"),
                                       L("a/l2", "b/./../b/l"), L("dot", "."), L("a/up", "..")])
    cli.commit(repo, a, "links")
    ls = cli.json("ls", f"{repo}@main", "-r")
    assert ls, "nothing listed"


def test_symlink_chain_escaping_the_tree_is_refused(cli, tmp_path):
    repo, head = committed(cli, tmp_path)
    a = make_tar(tmp_path / "chain.tar", [L("dot", "."), L("esc", "dot/..")])
    p = cli.fail("commit", repo, a, "-m", "chain")
    assert "esc" in err(p)
    assert cli.head(repo) == head


ZIP_HOSTILE = {
    "zip-absolute-path": ([F("/etc/evil", b"x")], "/etc/evil"),
    "zip-dotdot": ([F("a/../../evil", b"x")], "a/../../evil"),
    "zip-symlink-absolute": ([L("l", "/etc/shadow")], "'l'"),
    "zip-symlink-climbs-out": ([L("a/l", "../../../x")], "a/l"),
    "zip-duplicate": ([F("f", b"1"), F("f", b"2")], "'f'"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("case", list(ZIP_HOSTILE))
def test_hostile_zip_is_refused(cli, tmp_path, case):
    members, named = ZIP_HOSTILE[case]
    repo, head = committed(cli, tmp_path)
    a = make_zip(tmp_path / f"{case}.zip", members)
    p = cli.fail("commit", repo, a, "-m", "hostile")
    assert named in err(p), f"{case}: {err(p)!r}"
    assert cli.head(repo) == head


def truncated_tar(tmp_path, compress=None):
    a = make_tar(tmp_path / "full.tar", [F("ok.txt", b"fine\n"),
                                         F("big.bin", random.Random(1).randbytes(300000))])
    raw = a.read_bytes()
    cut = raw[:512 * 3 + 100000]            # ok.txt whole, big.bin's header, part of its data
    if compress == "gz":
        import gzip
        return gzip.compress(cut, mtime=0)
    return cut


@pytest.mark.parametrize("compress", [None, "gz"])
def test_truncated_tar_is_refused(cli, tmp_path, compress):
    repo, head = committed(cli, tmp_path)
    t = tmp_path / "t.tar"
    t.write_bytes(truncated_tar(tmp_path, compress))
    p = cli.fail("commit", repo, t, "-m", "truncated")
    assert "big.bin" in err(p), err(p)
    assert cli.head(repo) == head
    p = cli.fail("commit", repo, "-", "-m", "truncated", input=t.read_bytes())
    assert "big.bin" in err(p), err(p)
    assert cli.head(repo) == head


def test_truncated_gzip_stream_is_refused(cli, small_src, tmp_path):
    repo, head = committed(cli, tmp_path)
    a = make_with("gnutar-gz", small_src, tmp_path / "a.tgz")
    data = a.read_bytes()
    t = tmp_path / "cut.tgz"
    t.write_bytes(data[:len(data) // 2])
    cli.fail("commit", repo, t, "-m", "cut")
    assert cli.head(repo) == head


def test_truncated_zip_is_refused(cli, small_src, tmp_path):
    repo, head = committed(cli, tmp_path)
    a = make_with("bsdtar-zip", small_src, tmp_path / "a.zip")
    data = a.read_bytes()
    t = tmp_path / "cut.zip"
    t.write_bytes(data[:len(data) * 2 // 3])
    cli.fail("commit", repo, t, "-m", "cut")
    assert cli.head(repo) == head
    cli.fail("commit", repo, "-", "-m", "cut", input=t.read_bytes())
    assert cli.head(repo) == head


@pytest.mark.parametrize("what", ["random", "text", "truncated-header"])
def test_not_an_archive(cli, tmp_path, what):
    repo, head = committed(cli, tmp_path)
    data = {
        "random": random.Random(5).randbytes(5000),
        "text": b"hello, this is a plain text file\nwith two lines\n",
        "truncated-header": make_tar(tmp_path / "x.tar", [F("f", b"x")]).read_bytes()[:300],
    }[what]
    f = tmp_path / "junk.bin"
    f.write_bytes(data)
    p = cli.fail("commit", repo, f, "-m", "junk")
    assert "junk.bin" in err(p)
    assert any(w in err(p).lower() for w in ("archive", "format", "truncated")), err(p)
    assert cli.head(repo) == head


def test_one_word_text_file_is_not_an_archive(cli, tmp_path):
    """libarchive's mtree reader takes a line like "README" as an mtree spec: the file
    must not commit as an archive holding an empty file named README."""
    repo, head = committed(cli, tmp_path)
    f = tmp_path / "notes.txt"
    f.write_bytes(b"README\n")
    cli.fail("commit", repo, f, "-m", "text")
    assert cli.head(repo) == head


def test_mtree_manifest_is_refused(cli, tmp_path):
    """An mtree spec names files on the importing host and holds no data: it is not an
    archive.  (libarchive 3.6 does not read `contents=` without its checkfs option, so
    today this commits an EMPTY file 'stolen'; it must be refused instead.)"""
    repo, head = committed(cli, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"host secret\n")
    f = tmp_path / "evil.mtree"
    f.write_bytes(b"#mtree\n./stolen type=file contents=" + os.fsencode(str(secret)) + b"\n")
    p = cli.run("commit", repo, f, "-m", "mtree", rc=None)
    if p.returncode == 0:
        got = cli.run("cat", f"{repo}@main:stolen", rc=None).stdout
        raise AssertionError(f"an mtree spec was committed; 'stolen' holds {got!r}")
    assert cli.head(repo) == head


def test_empty_input_is_not_an_archive(cli, tmp_path):
    """Zero bytes (a failed producer in `producer | artifs commit REPO -`) must not commit an
    empty version over the branch; GNU tar says "does not look like a tar archive"."""
    repo, head = committed(cli, tmp_path)
    f = tmp_path / "empty.tar"
    f.write_bytes(b"")
    cli.fail("commit", repo, f, "-m", "empty")
    cli.fail("commit", repo, "-", "-m", "empty", input=b"")
    assert cli.head(repo) == head


def test_missing_archive_and_usage(cli, tmp_path):
    repo, head = committed(cli, tmp_path)
    p = cli.fail("commit", repo, tmp_path / "nope.tar", "-m", "x")
    assert "nope.tar" in err(p)
    assert cli.head(repo) == head
    # archive and --labels both on stdin
    p = cli.run("commit", repo, "-", "-m", "x", "--labels", "-", rc=2, input=b"")
    assert cli.head(repo) == head
