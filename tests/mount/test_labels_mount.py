"""Labels on the FUSE mount: user.label.* extended attributes, the .labels.jsonl
manifest, the .labels/ views (KEY/VALUE directories and KEY=VALUE filters),
an ImageFolder-style walk, read-only-ness, and a relabel seen live.

Every mount is made with the conftest `mounter` fixture, which unmounts it and
reaps its daemon whatever the test did.
"""

import ctypes
import ctypes.util
import errno
import itertools
import json
import os
import random
import shutil
import stat
from pathlib import Path

import pytest

from mountutil import Artifs, errno_of, make_env, run, sanitizer_reports, wait_for

LIVE_WAIT = 5.0     # a relabel must show under the branch directory within this many seconds

# path -> labels (None: a file without labels).  "a" < "a.txt": tree order puts
# a/b.jpg before a.txt, where a bytewise sort of whole paths would not.
LABELS = {
    "a/b.jpg": {"class": "cat", "split": "train"},
    "a.txt": {"class": "dog", "split": "train", "note": "x/y"},
    "img/001.jpg": {"class": "cat", "split": "train", "dot": "..."},
    "img/002.jpg": {"class": "dog", "split": "val", "eq": "a=b"},
    "img/003.jpg": {"class": "bird", "split": "train", "pct": "100%"},
    "img/006.jpg": None,
    "img/sub/004.jpg": {"class": "cat", "split": "val", "dot": "."},
    "img/sub/005.jpg": {"class": "dog", "split": "train", "dot": ".."},
    "unicodé/ß.jpg": {"class": "chat noir é", "split": "train"},
    "z/deep/x/y.bin": {"split": "val", "lit": "a%2Fb"},
}
LABELLED = {p: v for p, v in LABELS.items() if v}
TREE_ORDER = ["a/b.jpg", "a.txt", "img/001.jpg", "img/002.jpg", "img/003.jpg", "img/sub/004.jpg",
              "img/sub/005.jpg", "unicodé/ß.jpg", "z/deep/x/y.bin"]
assert sorted(TREE_ORDER) != TREE_ORDER and set(TREE_ORDER) == set(LABELLED)


def build(root, seed=5):
    rnd = random.Random(seed)
    data = {}
    for rel in LABELS:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data[rel] = rnd.randbytes(rnd.randrange(100, 6000))
        p.write_bytes(data[rel])
    (root / "link").symlink_to("a.txt")
    (root / "emptydir").mkdir()
    return data


def manifest_lines(labels, order):
    """The two acceptable spellings of each manifest line (raw UTF-8 or \\u escapes)."""
    out = []
    for p in order:
        o = {"path": p, "labels": dict(sorted(labels[p].items()))}
        out.append({json.dumps(o, separators=(",", ":"), ensure_ascii=a).encode() for a in (False, True)})
    return out


def check_manifest(got, labels, order):
    lines = got.split(b"\n")
    assert lines[-1] == b"", f"manifest does not end in a newline: {got[-100:]!r}"
    lines = lines[:-1]
    assert [json.loads(x)["path"] for x in lines] == order, "manifest not in tree order"
    want = manifest_lines(labels, order)
    for ln, ok in zip(lines, want):
        assert ln in ok, f"manifest line {ln!r}, wanted {sorted(ok)[0]!r}"


def esc(v):
    if v in (".", ".."):
        return "%2E" * len(v)
    return v.replace("%", "%25").replace("/", "%2F")


def matching(filters):
    return {p for p, l in LABELLED.items() if all(l.get(k) == v for k, v in filters.items())}


def ancestors(paths):
    out = set()
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def user_labels(path, follow=True):
    return sorted(n for n in os.listxattr(path, follow_symlinks=follow) if n.startswith("user."))


def walk_rel(d):
    """(files, dirs) below d, relative, as str; nothing followed."""
    files, dirs = set(), set()
    for dirpath, dirnames, filenames in os.walk(d):
        rel = os.path.relpath(dirpath, d)
        for n in dirnames:
            dirs.add(n if rel == "." else f"{rel}/{n}")
        for n in filenames:
            files.add(n if rel == "." else f"{rel}/{n}")
    return files, dirs


class Lab:
    pass


@pytest.fixture(scope="module")
def lab(artifs_bin, tmp_path_factory):
    """
    datasets/pets: the tree committed without labels (tag `bare`), then LABELS
    imported (main, tag `v1`).
    """
    b = Lab()
    b.root = tmp_path_factory.mktemp("labels")
    b.san = b.root / "sanitizer"
    b.env = make_env(b.root, b.san)
    b.src = b.root / "src"
    b.data = build(b.src)
    a = b.a = Artifs(artifs_bin, b.root / "store", b.env).init()
    b.store = a.store
    b.repo = "datasets/pets"
    a.create("dataset", "pets")
    b.bare_id = a.commit(b.repo, b.src, "data")
    a.tag(b.repo, "bare")
    f = b.root / "labels.jsonl"
    f.write_text("".join(json.dumps({"path": p, "labels": v}) + "\n" for p, v in LABELLED.items()))
    p = a.run("label", "import", b.repo, f, "-m", "labels")
    b.id1 = p.stdout.decode().strip()
    assert b.id1 == a.show(b.repo + "@main")["id"]
    a.tag(b.repo, "v1")
    yield b
    reports = sanitizer_reports(b.san)
    shutil.rmtree(b.root, ignore_errors=True)
    assert not reports, "\n".join(reports)


@pytest.fixture
def lab_mount(lab, mounter):
    return mounter(lab.store)


def version_dirs(lab, m):
    r = m.path / lab.repo
    return {"main": r / "main", "tag": r / "v1", "commit": r / ".commits" / lab.id1,
            "prefix": r / ".commits" / lab.id1[:8]}


# ---- extended attributes ----------------------------------------------------------------------

@pytest.mark.parametrize("which", ["main", "tag", "commit"])
def test_xattrs(lab, lab_mount, which):
    v = version_dirs(lab, lab_mount)[which]
    for rel, labels in LABELS.items():
        f = v / rel
        want = sorted(f"user.label.{k}" for k in (labels or {}))
        assert user_labels(f) == want, rel
        assert sorted(os.listxattr(f)) == want, f"{rel}: unexpected attributes {os.listxattr(f)}"
        for k, val in (labels or {}).items():
            assert os.getxattr(f, f"user.label.{k}") == val.encode(), (rel, k)
        assert errno_of(os.getxattr, f, "user.label.nosuchkey") == errno.ENODATA, rel
        assert errno_of(os.getxattr, f, "user.label.") == errno.ENODATA, rel
    # directories carry none
    for d in ("", "a", "img", "img/sub", "emptydir", "z/deep"):
        assert user_labels(v / d) == [], d
        assert errno_of(os.getxattr, v / d, "user.label.class") == errno.ENODATA, d
    # a symlink carries none; followed, it shows its target's
    assert user_labels(v / "link", follow=False) == []
    assert os.getxattr(v / "link", "user.label.class") == b"dog"
    # non-ASCII values come back as their UTF-8 bytes
    assert os.getxattr(v / "unicodé/ß.jpg", "user.label.class") == "chat noir é".encode()
    # an open file answers too
    fd = os.open(v / "a.txt", os.O_RDONLY)
    try:
        assert os.getxattr(fd, "user.label.note") == b"x/y"
        assert sorted(os.listxattr(fd)) == ["user.label.class", "user.label.note", "user.label.split"]
    finally:
        os.close(fd)


def test_xattrs_of_an_unlabelled_version(lab, lab_mount):
    v = lab_mount.path / lab.repo / "bare"
    for rel in LABELS:
        assert user_labels(v / rel) == [], rel
        assert errno_of(os.getxattr, v / rel, "user.label.class") == errno.ENODATA


def test_getxattr_size_query_and_erange(lab, lab_mount):
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    libc.getxattr.restype = ctypes.c_ssize_t
    libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    libc.listxattr.restype = ctypes.c_ssize_t
    v = lab_mount.path / lab.repo / "main"
    for rel, key, val in (("unicodé/ß.jpg", "class", "chat noir é"), ("img/003.jpg", "pct", "100%"),
                          ("a.txt", "note", "x/y")):
        path, name = os.fsencode(v / rel), f"user.label.{key}".encode()
        want = val.encode()
        assert len(want) > 1
        # size 0: the length
        assert libc.getxattr(path, name, None, 0) == len(want)
        # too small a buffer: ERANGE
        buf = ctypes.create_string_buffer(len(want))
        ctypes.set_errno(0)
        assert libc.getxattr(path, name, buf, 1) == -1
        assert ctypes.get_errno() == errno.ERANGE
        ctypes.set_errno(0)
        assert libc.getxattr(path, name, buf, len(want) - 1) == -1
        assert ctypes.get_errno() == errno.ERANGE
        # exactly enough
        assert libc.getxattr(path, name, buf, len(want)) == len(want)
        assert buf.raw[:len(want)] == want
        # listxattr: the same size protocol
        names = b"".join(f"user.label.{k}".encode() + b"\0" for k in sorted(LABELS[rel]))
        n = libc.listxattr(path, None, 0)
        assert n == len(names)
        lbuf = ctypes.create_string_buffer(n)
        ctypes.set_errno(0)
        assert libc.listxattr(path, lbuf, 1) == -1 and ctypes.get_errno() == errno.ERANGE
        assert libc.listxattr(path, lbuf, n) == n
        assert sorted(lbuf.raw[:n].split(b"\0")[:-1]) == sorted(names.split(b"\0")[:-1])


def test_getfattr(lab, lab_mount):
    if not shutil.which("getfattr"):
        pytest.skip("getfattr (package attr) is not installed")
    v = lab_mount.path / lab.repo / "main"
    out = run(["getfattr", "-d", "--absolute-names", v / "a.txt"]).stdout.decode()
    for line in ('user.label.class="dog"', 'user.label.note="x/y"', 'user.label.split="train"'):
        assert line in out.splitlines(), out
    out = run(["getfattr", "-n", "user.label.pct", "--only-values", v / "img/003.jpg"]).stdout
    assert out == b"100%"
    p = run(["getfattr", "-n", "user.label.nope", v / "img/003.jpg"], rc=None)
    assert p.returncode != 0 and b"No such attribute" in p.stderr, p.stderr
    assert run(["getfattr", "-d", v / "img/006.jpg"]).stdout == b""


# ---- the manifest -----------------------------------------------------------------------------

def test_manifest(lab, lab_mount, mounter):
    dirs = version_dirs(lab, lab_mount)
    got = (dirs["main"] / ".labels.jsonl").read_bytes()
    check_manifest(got, LABELLED, TREE_ORDER)
    st = os.stat(dirs["main"] / ".labels.jsonl")
    assert stat.S_ISREG(st.st_mode) and st.st_size == len(got)
    assert not st.st_mode & 0o222, oct(st.st_mode)
    # the same bytes for the same version, however it is reached, every time
    for name, d in dirs.items():
        for _ in range(2):
            assert (d / ".labels.jsonl").read_bytes() == got, name
        assert os.stat(d / ".labels.jsonl").st_size == len(got), name
    # reads at odd offsets
    fd = os.open(dirs["tag"] / ".labels.jsonl", os.O_RDONLY)
    try:
        for off, ln in ((0, 1), (1, 7), (len(got) - 3, 100), (len(got), 10), (17, 4096)):
            assert os.pread(fd, ln, off) == got[off:off + ln], (off, ln)
    finally:
        os.close(fd)
    # what label show describes
    shown = lab.a.json("label", "show", lab.repo + "@main")
    parsed = [json.loads(x) for x in got.splitlines()]
    assert {o["path"]: o["labels"] for o in parsed} == {o["path"]: o["labels"] for o in shown}
    assert len(parsed) == len(shown)
    # a version without labels: an empty file
    bare = lab_mount.path / lab.repo / "bare" / ".labels.jsonl"
    assert bare.read_bytes() == b"" and os.stat(bare).st_size == 0
    # another daemon serves the same bytes
    m2 = mounter(lab.store)
    assert (m2.path / lab.repo / "v1" / ".labels.jsonl").read_bytes() == got


# ---- views ---------------------------------------------------------------------------------------

def check_view(vdir, view, files, data):
    """view holds exactly `files` (relative paths) under their directories, as the originals."""
    got_files, got_dirs = walk_rel(view)
    assert got_files == files, f"{view}: files {sorted(got_files)}, wanted {sorted(files)}"
    assert got_dirs == ancestors(files), f"{view}: directories {sorted(got_dirs)}"
    for rel in files:
        a, b = os.lstat(view / rel), os.lstat(vdir / rel)
        assert stat.S_ISREG(a.st_mode), f"{view / rel} is not a regular file"
        assert a.st_ino == b.st_ino, f"{view / rel}: st_ino {a.st_ino}, original {b.st_ino}"
        assert a.st_size == b.st_size and stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode)
        assert (view / rel).read_bytes() == data[rel], rel


def test_views_keys_and_values(lab, lab_mount):
    v = lab_mount.path / lab.repo / "main"
    L = v / ".labels"
    keys = {k for l in LABELLED.values() for k in l}
    assert set(os.listdir(L)) == keys
    assert stat.S_ISDIR(os.stat(L).st_mode)
    for k in keys:
        values = {l[k] for l in LABELLED.values() if k in l}
        assert set(os.listdir(L / k)) == {esc(x) for x in values}, k
        for val in values:
            d = L / k / esc(val)
            assert stat.S_ISDIR(os.stat(d).st_mode)
            check_view(v, d, matching({k: val}), lab.data)
    # the escapes, spelt out
    assert os.listdir(L / "note") == ["x%2Fy"]
    assert os.listdir(L / "pct") == ["100%25"]
    assert set(os.listdir(L / "dot")) == {"%2E", "%2E%2E", "..."}
    assert os.listdir(L / "lit") == ["a%252Fb"]
    assert os.listdir(L / "lit/a%252Fb/z/deep/x") == ["y.bin"]
    assert set(os.listdir(L / "class")) == {"cat", "dog", "bird", "chat noir é"}
    assert sorted(walk_rel(L / "class/cat")[0]) == ["a/b.jpg", "img/001.jpg", "img/sub/004.jpg"]
    assert (L / "note/x%2Fy/a.txt").read_bytes() == lab.data["a.txt"]
    assert (L / "dot/%2E%2E/img/sub/005.jpg").read_bytes() == lab.data["img/sub/005.jpg"]
    # files in views carry their labels
    assert os.getxattr(L / "class/cat/img/sub/004.jpg", "user.label.dot") == b"."
    assert sorted(os.listxattr(L / "eq/a=b/img/002.jpg")) == \
        ["user.label.class", "user.label.eq", "user.label.split"]
    # an old version's views are its own: the unlabelled one has none
    assert os.listdir(lab_mount.path / lab.repo / "bare" / ".labels") == []


def test_views_filters(lab, lab_mount):
    v = lab_mount.path / lab.repo / "v1"
    L = v / ".labels"
    pairs = sorted({(k, val) for l in LABELLED.values() for k, val in l.items()})
    checked = 0
    for n in (1, 2):
        for combo in itertools.permutations(pairs, n):
            fl = dict(combo)
            if len(fl) < n or not matching(fl):
                continue
            d = L.joinpath(*(f"{k}={esc(val)}" for k, val in combo))
            files = matching(fl)
            keys = {k for p in files for k in LABELLED[p]} - set(fl)
            assert set(os.listdir(d)) == keys, combo
            for k in keys:
                values = {LABELLED[p][k] for p in files if k in LABELLED[p]}
                assert set(os.listdir(d / k)) == {esc(x) for x in values}, (combo, k)
                for val in values:
                    check_view(v, d / k / esc(val), matching({**fl, k: val}), lab.data)
                    checked += 1
    assert checked > 50, checked
    # spelt out
    assert set(os.listdir(L / "split=train")) == {"class", "note", "pct", "dot"}
    assert sorted(walk_rel(L / "split=train/class/cat")[0]) == ["a/b.jpg", "img/001.jpg"]
    assert set(os.listdir(L / "split=train/class=dog")) == {"note", "dot"}
    check_view(v, L / "split=train/class=dog/dot/%2E%2E", {"img/sub/005.jpg"}, lab.data)
    check_view(v, L / "pct=100%25/class/bird", {"img/003.jpg"}, lab.data)
    check_view(v, L / "note=x%2Fy/split/train", {"a.txt"}, lab.data)
    check_view(v, L / "eq=a=b/class/dog", {"img/002.jpg"}, lab.data)
    check_view(v, L / "class=chat noir é/split/train", {"unicodé/ß.jpg"}, lab.data)
    # three filters
    assert set(os.listdir(L / "split=train/class=dog/dot=%2E%2E")) == set()
    check_view(v, L / "split=val/class=cat/dot/%2E", {"img/sub/004.jpg"}, lab.data)


def test_views_enoent(lab, lab_mount):
    L = lab_mount.path / lab.repo / "main" / ".labels"
    missing = ["nokey", "nokey/x", "class/unicorn", "class/cat/nofile", "class/cat/img/nope.jpg",
               "class/cat/img/002.jpg",            # in the version, but a dog
               "class/cat/unicodé",                # a directory with no cat below it
               "class/cat/z", "split=nothing", "nokey=x", "split=nothing/class",
               "split=val/pct",                    # no val file has pct
               "split=train/class/unicorn", "note/x/y", "note/x%2Fz"]
    for rel in missing:
        assert errno_of(os.stat, L / rel) == errno.ENOENT, rel
        assert errno_of(os.listdir, L / rel) == errno.ENOENT, rel
    assert "pct" not in os.listdir(L / "split=val")
    assert "unicodé" not in os.listdir(L / "class/cat")


def test_imagefolder_walk(lab, lab_mount):
    """torchvision's ImageFolder(root=.../split=train/class): one directory per class."""
    root = lab_mount.path / lab.repo / "v1" / ".labels" / "split=train" / "class"
    train = {p: l for p, l in LABELLED.items() if l.get("split") == "train" and "class" in l}
    classes = sorted({l["class"] for l in train.values()})
    top = next(os.walk(root, followlinks=True))
    assert sorted(top[1]) == classes and top[2] == []
    samples = {}
    for cls in sorted(top[1]):
        for dirpath, dirnames, filenames in sorted(os.walk(root / cls, followlinks=True)):
            for n in sorted(filenames):
                full = os.path.join(dirpath, n)
                samples[(cls, os.path.relpath(full, root / cls))] = Path(full).read_bytes()
    want = {(l["class"], p) for p, l in train.items()}
    assert set(samples) == want
    for (cls, p), data in samples.items():
        assert data == lab.data[p], p
    class_to_idx = {c: i for i, c in enumerate(sorted(top[1]))}
    assert class_to_idx == {c: i for i, c in enumerate(classes)}


# ---- read-only -----------------------------------------------------------------------------------

def test_labels_read_only(lab, lab_mount):
    v = lab_mount.path / lab.repo / "main"
    L = v / ".labels"
    f = v / "a.txt"
    ops = {
        "setxattr new": lambda: os.setxattr(f, "user.label.new", b"1"),
        "setxattr existing": lambda: os.setxattr(f, "user.label.class", b"cat"),
        "removexattr": lambda: os.removexattr(f, "user.label.class"),
        "setxattr view file": lambda: os.setxattr(L / "class/dog/a.txt", "user.label.class", b"x"),
        "manifest O_WRONLY": lambda: os.open(v / ".labels.jsonl", os.O_WRONLY),
        "manifest O_TRUNC": lambda: os.open(v / ".labels.jsonl", os.O_RDWR | os.O_TRUNC),
        "manifest unlink": lambda: os.unlink(v / ".labels.jsonl"),
        "manifest rename": lambda: os.rename(v / ".labels.jsonl", v / "x.jsonl"),
        "manifest truncate": lambda: os.truncate(v / ".labels.jsonl", 0),
        "mkdir in .labels": lambda: os.mkdir(L / "newkey"),
        "mkdir value": lambda: os.mkdir(L / "class/newvalue"),
        "mkdir filter": lambda: os.mkdir(L / "class=newvalue"),
        "rmdir key": lambda: os.rmdir(L / "note"),
        "create in value": lambda: os.open(L / "class/cat/new.jpg", os.O_WRONLY | os.O_CREAT, 0o644),
        "create in .labels": lambda: os.open(L / "new", os.O_WRONLY | os.O_CREAT, 0o644),
        "write view file": lambda: os.open(L / "class/cat/a/b.jpg", os.O_WRONLY),
        "unlink view file": lambda: os.unlink(L / "class/cat/a/b.jpg"),
        "rename view file": lambda: os.rename(L / "class/cat/a/b.jpg", L / "class/cat/a/moved.jpg"),
        "rename across views": lambda: os.rename(L / "class/cat/img/001.jpg", L / "class/dog/img/001.jpg"),
        "rename value": lambda: os.rename(L / "class/cat", L / "class/kitten"),
        "symlink in view": lambda: os.symlink("x", L / "class/cat/l"),
        "link into view": lambda: os.link(f, L / "class/cat/a.txt"),
        "chmod view file": lambda: os.chmod(L / "class/cat/a/b.jpg", 0o666),
        "utime .labels": lambda: os.utime(L, None),
    }
    seen = {name: errno_of(fn) for name, fn in ops.items()}
    wrong = {k: (errno.errorcode.get(e, e) if e else "succeeded") for k, e in seen.items() if e != errno.EROFS}
    assert not wrong, f"not EROFS: {wrong}"
    # nothing changed
    assert os.getxattr(f, "user.label.class") == b"dog"
    check_manifest((v / ".labels.jsonl").read_bytes(), LABELLED, TREE_ORDER)
    assert lab.a.json("label", "show", lab.repo + "@main:a.txt")["labels"] == LABELS["a.txt"]


# ---- live relabel ----------------------------------------------------------------------------------

def test_relabel_while_mounted(store, mounter, tmp_path):
    src = tmp_path / "src"
    rnd = random.Random(99)
    data = {}
    for rel in ("f1.jpg", "f2.jpg", "sub/f3.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        data[rel] = rnd.randbytes(3000)
        (src / rel).write_bytes(data[rel])
    repo = "datasets/live"
    store.create("dataset", "live")
    store.commit(repo, src, "data")
    store.run("label", "set", repo, "f1.jpg", "class=cat", "split=train")
    store.run("label", "set", repo, "f2.jpg", "class=dog")
    old_id = store.show(repo + "@main")["id"]
    store.tag(repo, "old")
    old = {"f1.jpg": {"class": "cat", "split": "train"}, "f2.jpg": {"class": "dog"}}
    m = mounter(store.store)
    main, tag = m.path / repo / "main", m.path / repo / "old"
    commit = m.path / repo / ".commits" / old_id
    assert os.getxattr(main / "f1.jpg", "user.label.class") == b"cat"
    old_manifest = (main / ".labels.jsonl").read_bytes()
    check_manifest(old_manifest, old, ["f1.jpg", "f2.jpg"])
    assert sorted(os.listdir(main / ".labels/class")) == ["cat", "dog"]
    ino_before = os.stat(main / "f1.jpg").st_ino

    def xattr(path, key):
        try:
            return os.getxattr(path, f"user.label.{key}")
        except OSError as e:
            return e.errno

    def manifest(d):
        try:
            return (d / ".labels.jsonl").read_bytes()
        except OSError as e:
            return e.errno

    # relabel f1, label f3
    store.run("label", "set", repo, "f1.jpg", "class=tiger")
    store.run("label", "set", repo, "sub", "class=cat")
    new = {"f1.jpg": {"class": "tiger", "split": "train"}, "f2.jpg": {"class": "dog"},
           "sub/f3.jpg": {"class": "cat"}}
    ok = wait_for(lambda: xattr(main / "f1.jpg", "class") == b"tiger", LIVE_WAIT, 0.05)
    assert ok, f"main/f1.jpg still has class={xattr(main / 'f1.jpg', 'class')!r} after {LIVE_WAIT} s"
    assert wait_for(lambda: xattr(main / "sub/f3.jpg", "class") == b"cat", LIVE_WAIT, 0.05)
    assert wait_for(lambda: manifest(main) != old_manifest, LIVE_WAIT, 0.05), "main/.labels.jsonl did not change"
    check_manifest(manifest(main), new, ["f1.jpg", "f2.jpg", "sub/f3.jpg"])
    assert os.stat(main / ".labels.jsonl").st_size == len(manifest(main))
    assert wait_for(lambda: "tiger" in os.listdir(main / ".labels/class"), LIVE_WAIT, 0.05)
    assert (main / ".labels/class/tiger/f1.jpg").read_bytes() == data["f1.jpg"]
    assert sorted(walk_rel(main / ".labels/class/cat")[0]) == ["sub/f3.jpg"]
    assert (main / "f1.jpg").read_bytes() == data["f1.jpg"]
    print(f"f1.jpg's inode: {ino_before} before the relabel, {os.stat(main / 'f1.jpg').st_ino} after")
    # the tag and the commit keep the old labels
    for d in (tag, commit):
        assert xattr(d / "f1.jpg", "class") == b"cat"
        assert xattr(d / "sub/f3.jpg", "class") == errno.ENODATA
        assert manifest(d) == old_manifest
        assert sorted(os.listdir(d / ".labels/class")) == ["cat", "dog"]
        assert sorted(walk_rel(d / ".labels/class/cat")[0]) == ["f1.jpg"]
    # rm: the attribute goes away
    store.run("label", "rm", repo, "f2.jpg", "class")
    assert wait_for(lambda: xattr(main / "f2.jpg", "class") == errno.ENODATA, LIVE_WAIT, 0.05)
    assert wait_for(lambda: user_labels(main / "f2.jpg") == [], LIVE_WAIT, 0.05)
    assert wait_for(lambda: "dog" not in os.listdir(main / ".labels/class"), LIVE_WAIT, 0.05)
    del new["f2.jpg"]
    assert wait_for(lambda: isinstance(manifest(main), bytes) and
                    [json.loads(x)["path"] for x in manifest(main).splitlines()] == ["f1.jpg", "sub/f3.jpg"],
                    LIVE_WAIT, 0.05)
    check_manifest(manifest(main), new, ["f1.jpg", "sub/f3.jpg"])
    assert xattr(tag / "f2.jpg", "class") == b"dog"
    # --replace with nothing: main has no labels at all
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    store.run("label", "import", repo, empty, "--replace")
    assert wait_for(lambda: manifest(main) == b"", LIVE_WAIT, 0.05)
    assert wait_for(lambda: os.listdir(main / ".labels") == [], LIVE_WAIT, 0.05)
    assert user_labels(main / "f1.jpg") == []
    assert manifest(tag) == old_manifest
    # no daemon trouble along the way
    assert m.proc.poll() is None


# ---- many files: readdir of views and values past one buffer -----------------------------------------

def test_views_with_many_files(store, mounter, tmp_path):
    src = tmp_path / "src"
    classes = ["cat", "dog", "bird", "fish", "frog"]
    labels, data = {}, {}
    rows = ["path,class,split,idx"]
    n = 0
    for d in range(20):
        (src / f"d{d:02d}").mkdir(parents=True)
        for i in range(300):
            rel = f"d{d:02d}/img-{i:04d}-with-a-longer-name.jpg"
            data[rel] = f"{d}/{i}\n".encode()
            (src / rel).write_bytes(data[rel])
            labels[rel] = {"class": classes[n % 5], "split": "train" if n % 4 else "val", "idx": str(n)}
            rows.append(f"{rel},{classes[n % 5]},{labels[rel]['split']},{n}")
            n += 1
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    store.create("dataset", "many")
    store.commit("datasets/many", src, "data")
    store.run("label", "import", "datasets/many", tmp_path / "l.csv")
    m = mounter(store.store)
    v = m.path / "datasets/many/main"
    L = v / ".labels"
    # a key with 6,000 values: one directory each
    assert set(os.listdir(L / "idx")) == {str(i) for i in range(n)}
    assert len(os.listdir(L / "idx")) == n
    for cls in classes:
        files, dirs = walk_rel(L / "class" / cls)
        assert files == {p for p, l in labels.items() if l["class"] == cls}, cls
        assert dirs == {f"d{d:02d}" for d in range(20)}
    files, _ = walk_rel(L / "split=val/class/frog")
    want = {p for p, l in labels.items() if l["class"] == "frog" and l["split"] == "val"}
    assert files == want and len(want) > 100
    for rel in sorted(want)[::37]:
        assert (L / "split=val/class/frog" / rel).read_bytes() == data[rel]
        assert os.lstat(L / "split=val/class/frog" / rel).st_ino == os.lstat(v / rel).st_ino
    # the manifest: every file, in tree order, read in one go and in small pieces
    order = sorted(labels)
    got = (v / ".labels.jsonl").read_bytes()
    assert os.stat(v / ".labels.jsonl").st_size == len(got) > 300_000
    check_manifest(got, labels, order)
    pieces = []
    with open(v / ".labels.jsonl", "rb", buffering=0) as f:
        while True:
            b = f.read(4093)
            if not b:
                break
            pieces.append(b)
    assert b"".join(pieces) == got
    assert os.getxattr(v / order[-1], "user.label.idx") == str(n - 1).encode()


def test_xattrs_at_the_limits(store, mounter, tmp_path):
    """256 keys on one file, a 128-byte key, a 4096-byte value: all served as xattrs."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "full.bin").write_bytes(b"full\n")
    (src / "other.bin").write_bytes(b"other\n")
    big = "é" * 2048
    k128 = "k" * 128
    want = {f"k{i:03d}": f"value {i}" for i in range(254)}
    want.update({"big": big, k128: "long key"})
    assert len(want) == 256 and len(big.encode()) == 4096
    (tmp_path / "l.jsonl").write_text(json.dumps({"path": "full.bin", "labels": want}) + "\n")
    store.create("dataset", "lim")
    store.commit("datasets/lim", src, "data")
    store.run("label", "import", "datasets/lim", tmp_path / "l.jsonl")
    m = mounter(store.store)
    f = m.path / "datasets/lim/main/full.bin"
    assert sorted(os.listxattr(f)) == sorted(f"user.label.{k}" for k in want)
    for k, val in want.items():
        assert os.getxattr(f, f"user.label.{k}") == val.encode(), k
    assert os.listxattr(m.path / "datasets/lim/main/other.bin") == []
    got = [json.loads(x) for x in (f.parent / ".labels.jsonl").read_bytes().splitlines()]
    assert got == [{"path": "full.bin", "labels": want}]
    assert list(got[0]["labels"]) == sorted(want)
