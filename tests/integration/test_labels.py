"""Per-file labels through the CLI: import (CSV wide and long, JSON Lines, stdin),
set / rm / show / stats, ls --label, commit --labels, diff, history and
carry-over, limits, and every refusal (all or nothing: the branch stays put).

Every test drives the real binary against its own store (fixtures in conftest.py).
"""

import json
import random
import re
import shutil
import time

import pytest

from clihelpers import is_oid

REPO = "datasets/pets"

# the tree every test starts from: 8 regular files, two symlinks, an empty directory
FILES = [
    "README.txt",
    "images/bird/b1.jpg",
    "images/cat/c1.jpg",
    "images/cat/c2.jpg",
    "images/cat/c3.jpg",
    "images/dog/d1.jpg",
    "images/dog/d2.jpg",
    "unicodé/ß.jpg",
]
CATS = ["images/cat/c1.jpg", "images/cat/c2.jpg", "images/cat/c3.jpg"]
IMAGES = [f for f in FILES if f.startswith("images/")]

# the labels the `pets` fixture imports (commit `base`, tagged `base`)
BASE = {
    "images/bird/b1.jpg": {"class": "bird", "split": "test"},
    "images/cat/c1.jpg": {"class": "cat", "split": "train", "note": "fluffy, orange"},
    "images/cat/c2.jpg": {"class": "cat", "split": "val"},
    "images/cat/c3.jpg": {"class": "cat", "split": "train"},
    "images/dog/d1.jpg": {"class": "dog", "split": "train"},
    "unicodé/ß.jpg": {"class": "chat noir é", "split": "train"},
}


# ---- helpers ---------------------------------------------------------------------------

def build_tree(root, seed=7):
    rnd = random.Random(seed)
    for rel in FILES:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(rnd.randrange(1000, 5000)))
    (root / "link").symlink_to("README.txt")
    (root / "images/cat/alias.jpg").symlink_to("c1.jpg")     # in a directory that gets labelled
    (root / "empty").mkdir()
    return root


def write(tmp_path, name, content):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def jsonl(*objs):
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)


def labels_of(cli, spec):
    """{path: labels} from `label show SPEC --json` (a directory or a whole version)."""
    arr = cli.json("label", "show", spec)
    assert isinstance(arr, list), arr
    out = {}
    for o in arr:
        assert set(o) == {"path", "labels"}, o
        assert o["path"] not in out, f"{o['path']} listed twice"
        assert o["labels"], f"a file without labels is listed: {o}"
        out[o["path"]] = o["labels"]
    assert list(out) == sorted(out, key=lambda p: p.split("/")), f"not in path order: {list(out)}"
    return out


def all_labels(cli, ref="main", repo=REPO):
    return labels_of(cli, f"{repo}@{ref}")


def file_labels(cli, path, ref="main", repo=REPO):
    o = cli.json("label", "show", f"{repo}@{ref}:{path}")
    assert o == {"path": path, "labels": o["labels"]}, o
    return o["labels"]


def file_entries(cli, spec):
    """`ls -r --json` of the files and links: what a relabel must not change (a
    directory's id covers its files' labels, so it changes)."""
    return [e for e in cli.json("ls", "-r", spec) if e["type"] != "dir"]


def manifest_size(labels):
    """Bytes of the .labels.jsonl manifest of a version with these labels (compact JSON lines)."""
    return len("".join(json.dumps({"path": p, "labels": dict(sorted(v.items()))}, ensure_ascii=False,
                                  separators=(",", ":")) + "\n" for p, v in labels.items()).encode())


def nlog(cli, ref="main", repo=REPO):
    return len(cli.json("log", f"{repo}@{ref}"))


def printed_commit(cli, p, ref="main", repo=REPO):
    """A label command's stdout: one commit id, the branch's new head."""
    out = p.stdout.decode()
    assert out.endswith("\n") and out.count("\n") == 1, out
    cid = out.strip()
    assert is_oid(cid), out
    assert cli.head(repo, ref) == cid
    return cid


def line_numbers(err):
    """Line numbers an error message names: 'line 3', 'lines 2 and 4', 'lines 2, 5'."""
    nums = set()
    for m in re.finditer(r"\blines?\s+(\d+(?:\s*(?:,|and|-)\s*\d+)*)", err):
        nums |= {int(x) for x in re.findall(r"\d+", m.group(1))}
    return nums


def label(cli, *args, rc=0, input=None):
    return cli.run("label", *args, rc=rc, input=input)


def merged(base, changes):
    """base (path -> labels) with changes applied: a value None removes the key."""
    out = {p: dict(v) for p, v in base.items()}
    for path, kv in changes.items():
        d = out.setdefault(path, {})
        for k, v in kv.items():
            if v is None:
                d.pop(k, None)
            else:
                d[k] = v
    return {p: v for p, v in sorted(out.items(), key=lambda x: x[0].split("/")) if v}


class Unchanged:
    """Asserts that a refused command left the branch (and the labels) as they were."""

    def __init__(self, cli, ref="main", repo=REPO):
        self.cli, self.ref, self.repo = cli, ref, repo
        self.head = cli.head(repo, ref)
        self.n = nlog(cli, ref, repo)
        self.labels = all_labels(cli, ref, repo)

    def check(self):
        assert self.cli.head(self.repo, self.ref) == self.head, "a refused command moved the branch"
        assert nlog(self.cli, self.ref, self.repo) == self.n
        assert all_labels(self.cli, self.ref, self.repo) == self.labels


def refused(cli, *args, rc=1, input=None, lines=(), ref="main"):
    """Run a label command that must be refused; the branch must not move. stderr text."""
    u = Unchanged(cli, ref)
    if rc is None:
        p = cli.run(*args, rc=None, input=input)
        assert p.returncode in (1, 2), f"{args}: exit {p.returncode}: {p.stderr!r}"
    else:
        p = cli.run(*args, rc=rc, input=input)
    err = p.stderr.decode("utf-8", "replace")
    assert "artifs: error: " in err, err
    assert p.stdout == b"", p.stdout
    said = [ln for ln in err.splitlines() if ln.strip()]
    assert len(said) == len(set(said)), f"the error repeats itself: {err!r}"
    for n in lines:
        assert n in line_numbers(err), f"line {n} not named in {err!r}"
    u.check()
    return err


@pytest.fixture
def src(tmp_path):
    return build_tree(tmp_path / "src")


@pytest.fixture
def plain(cli, src):
    """datasets/pets with one commit of the tree and no labels."""
    cli.create(REPO)
    cli.commit(REPO, src, "data")
    return cli


@pytest.fixture
def pets(plain, tmp_path):
    """datasets/pets: the tree, then BASE imported (JSON Lines), tagged `base`."""
    f = write(tmp_path, "base.jsonl", jsonl(*({"path": p, "labels": l} for p, l in BASE.items())))
    p = label(plain, "import", REPO, f, "-m", "base labels")
    printed_commit(plain, p)
    plain.run("tag", REPO, "base")
    assert all_labels(plain) == BASE
    return plain


# ---- import: the three formats -----------------------------------------------------------

def test_import_csv_wide(plain, tmp_path):
    cli = plain
    h0 = cli.head(REPO)
    ls0 = file_entries(cli, REPO)
    f = write(tmp_path, "labels.csv",
              "path,class,split,note\n"
              "images/cat/c1.jpg,cat,train,\"fluffy, orange\"\n"
              "images/cat/c2.jpg,cat,val,\n"
              "\"images/dog/d1.jpg\",dog,train,\"says \"\"woof\"\"\"\n"
              "README.txt,,,just docs\n"
              "unicodé/ß.jpg,chat noir é,,\n")
    p = label(cli, "import", REPO, f, "-m", "wide csv")
    cid = printed_commit(cli, p)
    assert cid != h0
    want = {
        "README.txt": {"note": "just docs"},
        "images/cat/c1.jpg": {"class": "cat", "note": "fluffy, orange", "split": "train"},
        "images/cat/c2.jpg": {"class": "cat", "split": "val"},
        "images/dog/d1.jpg": {"class": "dog", "note": 'says "woof"', "split": "train"},
        "unicodé/ß.jpg": {"class": "chat noir é"},
    }
    assert all_labels(cli) == want
    # a new commit on top of the old head, with the message given
    show = cli.json("show", REPO)
    assert show["id"] == cid and show["parents"] == [h0] and show["message"] == "wide csv"
    # the data did not change: same files, sizes and object ids
    assert file_entries(cli, REPO) == ls0
    assert cli.json("label", "show", f"{REPO}@main:images/cat/c3.jpg") == \
        {"path": "images/cat/c3.jpg", "labels": {}}


def test_import_csv_crlf(plain, tmp_path):
    """RFC 4180 lines end in CRLF (as Python's csv module writes them)."""
    f = write(tmp_path, "crlf.csv", "path,class,split\r\nimages/cat/c1.jpg,cat,train\r\n"
                                    "images/dog/d1.jpg,dog,val\r\n")
    printed_commit(plain, label(plain, "import", REPO, f))
    assert all_labels(plain) == {"images/cat/c1.jpg": {"class": "cat", "split": "train"},
                                 "images/dog/d1.jpg": {"class": "dog", "split": "val"}}
    f = write(tmp_path, "crlf-long.csv", "path,key,value\r\nimages/cat/c2.jpg,class,cat\r\n"
                                         "images/cat/c2.jpg,note,\"a, b\"\r\n")
    printed_commit(plain, label(plain, "import", REPO, f))
    assert file_labels(plain, "images/cat/c2.jpg") == {"class": "cat", "note": "a, b"}


def test_import_csv_long(plain, tmp_path):
    cli = plain
    f = write(tmp_path, "long.csv",
              "path,key,value\n"
              "images/bird/b1.jpg,class,bird\n"
              "images/bird/b1.jpg,split,test\n"
              "images/dog/d2.jpg,class,dog\n"
              "\"images/dog/d2.jpg\",\"note\",\"a \"\"quoted\"\", value\"\n"
              "unicodé/ß.jpg,desc,日本語 😀\n")
    printed_commit(cli, label(cli, "import", REPO, f, "-m", "long"))
    assert all_labels(cli) == {
        "images/bird/b1.jpg": {"class": "bird", "split": "test"},
        "images/dog/d2.jpg": {"class": "dog", "note": 'a "quoted", value'},
        "unicodé/ß.jpg": {"desc": "日本語 😀"},
    }
    assert cli.json("log", REPO, "-n", "1")[0]["message"] == "long"


def test_import_jsonl_values_and_null(plain, tmp_path):
    cli = plain
    f = write(tmp_path, "a.jsonl",
              '{"path": "images/cat/c1.jpg", "labels": {"class": "cat", "split": "train", '
              '"score": 0.25, "count": 3, "neg": -7, "ok": true, "bad": false}}\n'
              '{"path": "images/dog/d1.jpg", "labels": {"class": "dog", "tab": "a\\tb", "eq": "x=y"}}\n')
    printed_commit(cli, label(cli, "import", REPO, f))
    want = {"images/cat/c1.jpg": {"class": "cat", "split": "train", "score": "0.25", "count": "3",
                                  "neg": "-7", "ok": "true", "bad": "false"},
            "images/dog/d1.jpg": {"class": "dog", "tab": "a\tb", "eq": "x=y"}}
    assert all_labels(cli) == want
    # null removes a key (also one that is not set); other keys and files are kept
    f2 = write(tmp_path, "b.ndjson",
               '{"path": "images/cat/c1.jpg", "labels": {"score": null, "nothere": null, "split": "val"}}\n')
    printed_commit(cli, label(cli, "import", REPO, f2))
    want["images/cat/c1.jpg"].pop("score")
    want["images/cat/c1.jpg"]["split"] = "val"
    assert all_labels(cli) == want
    # .json is JSON Lines too
    f3 = write(tmp_path, "c.json", '{"path": "images/bird/b1.jpg", "labels": {"class": "bird"}}\n')
    printed_commit(cli, label(cli, "import", REPO, f3))
    want["images/bird/b1.jpg"] = {"class": "bird"}
    assert all_labels(cli) == merged(want, {})
    # show, one file: KEY=VALUE lines sorted by key
    assert cli.text("label", "show", f"{REPO}@main:images/cat/c1.jpg") == \
        "bad=false\nclass=cat\ncount=3\nneg=-7\nok=true\nsplit=val\n"


def test_import_jsonl_numbers_keep_their_text(plain, tmp_path):
    """"numbers are taken as their JSON text": 1.10 stays "1.10" (a version number
    must not become "1.1"), 1e3 stays "1e3", 0.0 stays "0.0"."""
    f = write(tmp_path, "n.jsonl", '{"path": "README.txt", "labels": {"version": 1.10, "exp": 1e3, '
                                   '"small": 2.5E-7, "zero": 0.0, "int": -42}}\n')
    printed_commit(plain, label(plain, "import", REPO, f))
    assert file_labels(plain, "README.txt") == {"version": "1.10", "exp": "1e3", "small": "2.5E-7",
                                               "zero": "0.0", "int": "-42"}


def test_import_jsonl_integer_past_64_bits(plain, tmp_path):
    """An integer past 64 bits is still a JSON number: taken as its text."""
    f = write(tmp_path, "n.jsonl", '{"path": "README.txt", "labels": {"big": 12345678901234567890}}\n')
    printed_commit(plain, label(plain, "import", REPO, f))
    assert file_labels(plain, "README.txt") == {"big": "12345678901234567890"}


def test_import_merges(pets, tmp_path):
    cli = pets
    f = write(tmp_path, "m.csv", "path,split,weight\nimages/cat/c1.jpg,val,3\nimages/dog/d2.jpg,,1\n")
    printed_commit(cli, label(cli, "import", REPO, f))
    assert all_labels(cli) == merged(BASE, {"images/cat/c1.jpg": {"split": "val", "weight": "3"},
                                            "images/dog/d2.jpg": {"weight": "1"}})


def test_import_replace(pets, tmp_path):
    cli = pets
    f = write(tmp_path, "r.jsonl", jsonl({"path": "images/dog/d1.jpg", "labels": {"class": "wolf"}},
                                         {"path": "README.txt", "labels": {"kind": "doc"}}))
    printed_commit(cli, label(cli, "import", REPO, f, "--replace", "-m", "replace"))
    assert all_labels(cli) == {"README.txt": {"kind": "doc"}, "images/dog/d1.jpg": {"class": "wolf"}}
    # CSV, replacing again
    f = write(tmp_path, "r.csv", "path,key,value\nimages/cat/c2.jpg,class,cat\n")
    printed_commit(cli, label(cli, "import", REPO, f, "--replace"))
    assert all_labels(cli) == {"images/cat/c2.jpg": {"class": "cat"}}
    # an empty file with --replace: no labels at all
    f = write(tmp_path, "none.jsonl", "")
    printed_commit(cli, label(cli, "import", REPO, f, "--replace"))
    assert all_labels(cli) == {}
    assert cli.json("label", "stats", f"{REPO}@main")["labelled"] == 0
    # the tag kept its labels
    assert all_labels(cli, "base") == BASE


def test_import_stdin(pets):
    cli = pets
    data = jsonl({"path": "images/dog/d2.jpg", "labels": {"class": "dog", "split": "val"}}).encode()
    printed_commit(cli, label(cli, "import", REPO, "-", "--format", "jsonl", input=data))
    want = merged(BASE, {"images/dog/d2.jpg": {"class": "dog", "split": "val"}})
    assert all_labels(cli) == want
    data = b"path,split\nimages/dog/d2.jpg,test\n"
    printed_commit(cli, label(cli, "import", f"{REPO}@main", "-", "--format", "csv", input=data))
    want["images/dog/d2.jpg"]["split"] = "test"
    assert all_labels(cli) == want
    # --replace from stdin
    data = b"path,key,value\nREADME.txt,kind,doc\n"
    printed_commit(cli, label(cli, "import", REPO, "-", "--format", "csv", "--replace", input=data))
    assert all_labels(cli) == {"README.txt": {"kind": "doc"}}
    # stdin needs --format
    refused(cli, "label", "import", REPO, "-", rc=None, input=b"path,kind\nREADME.txt,x\n")


def test_import_format_option(pets, tmp_path):
    cli = pets
    f = write(tmp_path, "labels.txt", "path,extra\nREADME.txt,yes\n")
    # no known extension and no --format: refused
    refused(cli, "label", "import", REPO, f, rc=None)
    printed_commit(cli, label(cli, "import", REPO, f, "--format", "csv"))
    # --format beats the extension
    g = write(tmp_path, "really-jsonl.csv", jsonl({"path": "README.txt", "labels": {"extra": "no"}}))
    printed_commit(cli, label(cli, "import", REPO, g, "--format", "jsonl"))
    assert file_labels(cli, "README.txt") == {"extra": "no"}
    refused(cli, "label", "import", REPO, f, "--format", "xml", rc=2)
    refused(cli, "label", "import", REPO, tmp_path / "missing.csv", rc=1)


def test_import_directory_path(pets, tmp_path):
    cli = pets
    f = write(tmp_path, "d.csv", "path,kind\nimages,image\nimages/cat,\n")
    printed_commit(cli, label(cli, "import", REPO, f))
    want = merged(BASE, {p: {"kind": "image"} for p in IMAGES})
    assert all_labels(cli) == want
    f = write(tmp_path, "d.jsonl", jsonl({"path": "images/cat", "labels": {"kind": None, "pet": "yes"}}))
    printed_commit(cli, label(cli, "import", REPO, f))
    want = merged(want, {p: {"kind": None, "pet": "yes"} for p in CATS})
    assert all_labels(cli) == want
    # directories themselves carry nothing: show of a directory lists its files
    assert labels_of(cli, f"{REPO}@main:images/cat") == {p: want[p] for p in CATS}


def test_import_nothing_changed(pets, tmp_path):
    cli = pets
    h, n = cli.head(REPO), nlog(cli)
    f = write(tmp_path, "same.csv", "path,class,split\nimages/cat/c2.jpg,cat,val\n")
    p = label(cli, "import", REPO, f)
    assert p.stdout.decode() == h + "\n"
    assert nlog(cli) == n and cli.head(REPO) == h
    # removing a key that is not there changes nothing either
    f = write(tmp_path, "same.jsonl", jsonl({"path": "images/cat/c2.jpg", "labels": {"nope": None}}))
    assert label(cli, "import", REPO, f).stdout.decode() == h + "\n"
    assert nlog(cli) == n


def test_import_to_another_branch(pets, tmp_path):
    cli = pets
    cli.run("branch", REPO, "relabel")
    h = cli.head(REPO)
    f = write(tmp_path, "b.csv", "path,class\nimages/dog/d2.jpg,dog\n")
    cid = printed_commit(cli, label(cli, "import", f"{REPO}@relabel", f), ref="relabel")
    assert cli.head(REPO) == h
    assert all_labels(cli) == BASE
    assert all_labels(cli, "relabel") == merged(BASE, {"images/dog/d2.jpg": {"class": "dog"}})
    assert cli.json("show", f"{REPO}@relabel")["parents"] == [h]
    assert cid != h
    # a tag does not move: labelling it is refused
    refused(cli, "label", "set", f"{REPO}@base", "README.txt", "a=b", rc=None, ref="base")
    refused(cli, "label", "import", f"{REPO}@nosuch", f, rc=1)


# ---- import: refusals -----------------------------------------------------------------------

GOOD_CSV = "images/cat/c1.jpg,cat\n"        # a valid first row: it must not be applied either
GOOD_JSONL = '{"path": "images/dog/d2.jpg", "labels": {"class": "dog"}}\n'
K257 = json.dumps({"path": "README.txt", "labels": {f"k{i:03d}": "v" for i in range(257)}}) + "\n"

IMPORT_ERRORS = [
    # (id, file name, content, line numbers the error must name)
    ("unknown-path-wide", "e.csv", "path,class\n" + GOOD_CSV + "images/cat/nope.jpg,cat\n", [3]),
    ("unknown-path-long", "e.csv", "path,key,value\nimages/cat/c1.jpg,class,cat\nnope/x.jpg,class,cat\n", [3]),
    # unknown paths that sort before every entry of their directory, alone or after a good row
    ("unknown-path-sorting-first", "e.csv", "path,class\nAAA.jpg,cat\n", [2]),
    ("unknown-path-first-in-subdir", "e.csv", "path,class\nimages/bird/a.jpg,cat\n", [2]),
    ("unknown-path-first-after-good-row", "e.csv", "path,class\n" + GOOD_CSV + "images/cat/0.jpg,cat\n", [3]),
    ("unknown-path-between-entries", "e.jsonl", '{"path": "images/cat/c10.jpg", "labels": {"a": "1"}}\n', [1]),
    ("unknown-path-jsonl", "e.jsonl", GOOD_JSONL + '{"path": "zzz.jpg", "labels": {"a": "1"}}\n', [2]),
    ("too-many-columns", "e.csv", "path,class,split\nimages/cat/c1.jpg,cat,train\n"
                                  "images/cat/c2.jpg,cat,train,extra\n", [3]),
    ("too-few-columns", "e.csv", "path,class,split\nimages/cat/c1.jpg,cat,train\nimages/cat/c2.jpg,cat\n", [3]),
    ("long-too-few-columns", "e.csv", "path,key,value\nimages/cat/c1.jpg,class,cat\nimages/cat/c2.jpg,class\n",
     [3]),
    ("quoted-line-break-in-value", "e.csv", "path,key,value\nimages/cat/c1.jpg,class,cat\n"
                                            "images/cat/c2.jpg,note,\"two\nlines\"\n", []),
    ("unterminated-quote", "e.csv", "path,class\n" + GOOD_CSV + 'images/cat/c2.jpg,"cat\n', [3]),
    ("malformed-json", "e.jsonl", GOOD_JSONL + '{"path": "images/cat/c2.jpg", "labels": {"class": "cat"\n', [2]),
    ("json-not-an-object", "e.jsonl", GOOD_JSONL + '["images/cat/c1.jpg", {"a": "1"}]\n', [2]),
    ("json-labels-not-an-object", "e.jsonl", GOOD_JSONL + '{"path": "images/cat/c1.jpg", "labels": "cat"}\n',
     [2]),
    ("json-no-path", "e.jsonl", GOOD_JSONL + '{"labels": {"a": "1"}}\n', [2]),
    ("json-value-array", "e.jsonl", GOOD_JSONL + '{"path": "images/cat/c1.jpg", "labels": {"a": ["x"]}}\n', [2]),
    ("bad-key-uppercase", "e.csv", "path,key,value\nimages/cat/c1.jpg,class,cat\nimages/cat/c1.jpg,Class,cat\n",
     [3]),
    ("bad-key-space-in-header", "e.csv", "path,class,my key\nimages/cat/c1.jpg,cat,x\n", [1]),
    ("bad-key-leading-dot", "e.jsonl", GOOD_JSONL + '{"path": "README.txt", "labels": {".hidden": "1"}}\n', [2]),
    ("bad-key-leading-dash", "e.jsonl", GOOD_JSONL + '{"path": "README.txt", "labels": {"-x": "1"}}\n', [2]),
    ("bad-key-slash", "e.jsonl", GOOD_JSONL + '{"path": "README.txt", "labels": {"a/b": "1"}}\n', [2]),
    ("bad-key-129-bytes", "e.jsonl", GOOD_JSONL + jsonl({"path": "README.txt", "labels": {"k" * 129: "1"}}), [2]),
    ("bad-key-empty", "e.jsonl", GOOD_JSONL + '{"path": "README.txt", "labels": {"": "1"}}\n', [2]),
    ("newline-in-value", "e.jsonl", GOOD_JSONL + '{"path": "README.txt", "labels": {"a": "x\\ny"}}\n', [2]),
    ("cr-in-value", "e.jsonl", GOOD_JSONL + '{"path": "README.txt", "labels": {"a": "x\\ry"}}\n', [2]),
    ("nul-in-value", "e.jsonl", GOOD_JSONL + '{"path": "README.txt", "labels": {"a": "x\\u0000y"}}\n', [2]),
    ("empty-value-jsonl", "e.jsonl", GOOD_JSONL + '{"path": "README.txt", "labels": {"a": ""}}\n', [2]),
    ("empty-value-long", "e.csv", "path,key,value\nimages/cat/c1.jpg,class,cat\nREADME.txt,a,\n", [3]),
    ("value-4097-bytes", "e.jsonl", GOOD_JSONL + jsonl({"path": "README.txt", "labels": {"a": "v" * 4097}}), [2]),
    ("non-utf8-value-csv", "e.csv", b"path,class\n" + GOOD_CSV.encode() + b"images/cat/c2.jpg,caf\xe9\n", [3]),
    ("non-utf8-in-json-string", "e.jsonl",
     GOOD_JSONL.encode() + b'{"path": "README.txt", "labels": {"a": "caf\xe9"}}\n', [2]),
    ("duplicate-long", "e.csv", "path,key,value\nimages/cat/c1.jpg,class,cat\nimages/dog/d1.jpg,class,dog\n"
                                "images/cat/c1.jpg,class,cat\n", [4]),
    ("duplicate-wide", "e.csv", "path,class,split\nimages/cat/c1.jpg,cat,\nimages/dog/d1.jpg,dog,\n"
                                "images/cat/c1.jpg,dog,\n", [4]),
    ("duplicate-jsonl", "e.jsonl", GOOD_JSONL + '{"path": "images/cat/c1.jpg", "labels": {"a": "1"}}\n'
                                   '{"path": "images/cat/c1.jpg", "labels": {"b": "2", "a": "1"}}\n', [3]),
    ("duplicate-key-in-header", "e.csv", "path,class,class\nimages/cat/c1.jpg,cat,dog\n", [1]),
    ("wide-header-without-path", "e.csv", "file,class\nimages/cat/c1.jpg,cat\n", [1]),
    ("257-keys", "e.jsonl", GOOD_JSONL + K257, [2]),
]


@pytest.mark.parametrize("name,fname,content,lines", IMPORT_ERRORS, ids=[e[0] for e in IMPORT_ERRORS])
def test_import_refused(pets, tmp_path, name, fname, content, lines):
    f = write(tmp_path, fname, content)
    refused(pets, "label", "import", REPO, f, "-m", "must not land", lines=lines)
    # and the same with --replace, which would otherwise drop every other label
    refused(pets, "label", "import", REPO, f, "--replace", lines=lines)


def test_import_refused_from_stdin(pets):
    data = ("path,class\n" + GOOD_CSV + "images/cat/nope.jpg,cat\n").encode()
    refused(pets, "label", "import", REPO, "-", "--format", "csv", input=data, lines=[3])
    data = (GOOD_JSONL + "{not json}\n").encode()
    refused(pets, "label", "import", REPO, "-", "--format", "jsonl", input=data, lines=[2])


def test_import_refused_names_every_bad_line(pets, tmp_path):
    f = write(tmp_path, "two.csv", "path,class\nimages/cat/nope1.jpg,cat\n" + GOOD_CSV +
              "images/cat/nope2.jpg,cat\n")
    refused(pets, "label", "import", REPO, f, lines=[2, 4])


def test_import_to_repo_without_commits(cli, tmp_path):
    cli.create("datasets/unborn")
    f = write(tmp_path, "u.csv", "path,class\na.jpg,cat\n")
    p = cli.fail("label", "import", "datasets/unborn", f)
    assert p.stdout == b""
    cli.fail("log", "datasets/unborn")          # still no commit


# ---- set / rm -----------------------------------------------------------------------------------

def test_set_and_rm(pets):
    cli = pets
    h = cli.head(REPO)
    p = label(cli, "set", REPO, "images/dog/d2.jpg", "class=dog", "split=val", "eq=a=b", "-m", "set d2")
    cid = printed_commit(cli, p)
    assert cid != h
    assert cli.json("show", REPO)["parents"] == [h]
    assert cli.json("show", REPO)["message"] == "set d2"
    want = merged(BASE, {"images/dog/d2.jpg": {"class": "dog", "split": "val", "eq": "a=b"}})
    assert all_labels(cli) == want
    # overwrite one key, keep the others
    printed_commit(cli, label(cli, "set", f"{REPO}@main", "images/dog/d2.jpg", "split=test"))
    want["images/dog/d2.jpg"]["split"] = "test"
    assert all_labels(cli) == want
    # a directory: every file under it
    printed_commit(cli, label(cli, "set", REPO, "images/cat", "pet=yes", "-m", "cats"))
    want = merged(want, {p: {"pet": "yes"} for p in CATS})
    assert all_labels(cli) == want
    # rm: several keys, one file
    printed_commit(cli, label(cli, "rm", REPO, "images/dog/d2.jpg", "eq", "split", "-m", "rm d2"))
    assert cli.json("show", REPO)["message"] == "rm d2"
    want = merged(want, {"images/dog/d2.jpg": {"eq": None, "split": None}})
    assert all_labels(cli) == want
    # rm on a directory
    printed_commit(cli, label(cli, "rm", REPO, "images", "pet"))
    want = merged(want, {p: {"pet": None} for p in CATS})
    assert all_labels(cli) == want
    # the last key of a file: the file is no longer listed
    printed_commit(cli, label(cli, "rm", REPO, "images/dog/d2.jpg", "class"))
    want.pop("images/dog/d2.jpg")
    assert all_labels(cli) == want == BASE
    # setting what is already there: no commit, the head is printed
    h, n = cli.head(REPO), nlog(cli)
    assert label(cli, "set", REPO, "images/cat/c1.jpg", "class=cat").stdout.decode() == h + "\n"
    assert nlog(cli) == n
    assert all_labels(cli, "base") == BASE


def test_set_and_rm_unknown_path_refused(pets):
    cli = pets
    for cmd, path, arg in (("set", "images/cat/nope.jpg", "class=cat"), ("set", "nope/dir", "a=1"),
                           ("set", "nope1", "a=1"), ("rm", "images/cat/nope.jpg", "class"),
                           ("rm", "nope/dir", "class"),
                           # before the first entry of the root, of a directory
                           ("set", "AAA.jpg", "a=1"), ("set", "images/bird/a.jpg", "a=1"),
                           ("rm", "images/cat/0.jpg", "class"), ("set", "images/aaa", "a=1")):
        err = refused(cli, "label", cmd, REPO, path, arg, rc=1)
        assert path in err, err


def test_set_and_rm_refused(pets):
    cli = pets
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "Class=cat", rc=1)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "k" * 129 + "=x", rc=1)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", ".dot=x", rc=1)
    refused(cli, "label", "rm", REPO, "images/cat/c1.jpg", "Class", rc=1)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "noequals", rc=2)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", rc=2)           # no KEY=VALUE
    refused(cli, "label", "rm", REPO, "images/cat/c1.jpg", rc=2)            # no KEY
    refused(cli, "label", "set", REPO, rc=2)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "=x", rc=None)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "a=", rc=None)  # empty: use rm
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "a=x\ny", rc=1)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "a=x\ry", rc=1)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", b"a=caf\xe9", rc=1)
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "a=" + "v" * 4097, rc=1)
    # one bad pair refuses the good ones given with it
    refused(cli, "label", "set", REPO, "images/cat/c1.jpg", "good=1", "Bad=2", rc=1)
    # a symlink carries no labels
    refused(cli, "label", "set", REPO, "link", "a=1", rc=1)
    refused(cli, "label", "set", REPO, "images/cat/alias.jpg", "a=1", rc=1)
    f = write(cli.store.parent, "link.csv", "path,a\nimages/cat/c2.jpg,1\nimages/cat/alias.jpg,1\n")
    refused(cli, "label", "import", REPO, f, rc=1, lines=[3])
    refused(cli, "label", "set", "datasets/nosuch", "README.txt", "a=1", rc=1)


def test_help(bare):
    out = bare.run("label", "--help", store=False).stdout.decode()
    assert out.startswith("usage: artifs label"), out
    for sub in ("import", "set", "rm", "show", "stats"):
        assert sub in out, sub
    assert "\n  label " in bare.run("--help", store=False).stdout.decode()
    assert "--label" in bare.run("ls", "--help", store=False).stdout.decode()
    assert "--labels" in bare.run("commit", "--help", store=False).stdout.decode()


def test_label_usage_errors(pets):
    for args in (("label",), ("label", "frobnicate", REPO), ("label", "import", REPO),
                 ("label", "show"), ("label", "stats"), ("label", "import", REPO, "a.csv", "--bogus")):
        p = pets.run(*args, rc=2)
        assert "artifs: error: " in p.stderr.decode(), args
        assert p.stdout == b"", args


# ---- show / stats ---------------------------------------------------------------------------------

def test_show(pets):
    cli = pets
    # one file, text and JSON
    assert cli.text("label", "show", f"{REPO}@main:images/cat/c1.jpg") == \
        "class=cat\nnote=fluffy, orange\nsplit=train\n"
    assert cli.json("label", "show", f"{REPO}@main:images/cat/c1.jpg") == \
        {"path": "images/cat/c1.jpg", "labels": BASE["images/cat/c1.jpg"]}
    assert cli.run("label", "show", f"{REPO}@main:unicodé/ß.jpg").stdout == \
        "class=chat noir é\nsplit=train\n".encode()
    # a file without labels
    assert cli.text("label", "show", f"{REPO}@main:images/dog/d2.jpg") == ""
    assert cli.json("label", "show", f"{REPO}@main:images/dog/d2.jpg") == \
        {"path": "images/dog/d2.jpg", "labels": {}}

    def line(p):
        return p + "\t" + " ".join(f"{k}={v}" for k, v in sorted(BASE[p].items()))

    # the whole version: labelled files in path order, paths from the version root
    order = [p for p in FILES if p in BASE]
    assert cli.text("label", "show", f"{REPO}@main") == "".join(line(p) + "\n" for p in order)
    assert cli.json("label", "show", f"{REPO}@main") == [{"path": p, "labels": BASE[p]} for p in order]
    # a directory: its labelled files, still relative to the version root
    assert cli.text("label", "show", f"{REPO}@main:images/cat") == "".join(line(p) + "\n" for p in CATS)
    assert cli.json("label", "show", f"{REPO}@main:images") == \
        [{"path": p, "labels": BASE[p]} for p in order if p.startswith("images/")]
    # a directory without labelled files
    assert cli.text("label", "show", f"{REPO}@main:empty") == ""
    assert cli.json("label", "show", f"{REPO}@main:empty") == []
    # by tag and by commit-id prefix
    h = cli.head(REPO)
    assert all_labels(cli, "base") == BASE and all_labels(cli, h[:8]) == BASE
    cli.fail("label", "show", f"{REPO}@main:nope.jpg")
    cli.fail("label", "show", f"{REPO}@nosuchref")


def test_stats(pets):
    cli = pets
    st = cli.json("label", "stats", f"{REPO}@main")
    want_keys = {}
    for labels in BASE.values():
        for k, v in labels.items():
            e = want_keys.setdefault(k, {"files": 0, "values": {}})
            e["files"] += 1
            e["values"][v] = e["values"].get(v, 0) + 1
    assert st == {"files": len(FILES), "labelled": len(BASE), "keys": want_keys}
    assert st["keys"]["class"] == {"files": 6, "values": {"bird": 1, "cat": 3, "dog": 1, "chat noir é": 1}}
    text = cli.text("label", "stats", f"{REPO}@main")
    rows = [ln.split("\t") for ln in text.splitlines()]
    assert sorted((r[0], r[1], int(r[2])) for r in rows if len(r) == 3) == \
        sorted((k, v, c) for k, e in want_keys.items() for v, c in e["values"].items())
    # nothing but KEY<TAB>VALUE<TAB>COUNT lines
    assert all(len(r) == 3 for r in rows), text
    # a version with no labels
    first = cli.json("log", REPO)[-1]["id"]
    assert cli.json("label", "stats", f"{REPO}@{first}") == {"files": len(FILES), "labelled": 0, "keys": {}}
    assert cli.text("label", "stats", f"{REPO}@{first}") == ""


# ---- ls --label -------------------------------------------------------------------------------------

def test_ls_label(pets):
    cli = pets

    def ls(*args):
        return cli.text("ls", *args).splitlines()

    assert ls(f"{REPO}@main", "--label", "class=cat") == CATS
    assert ls(f"{REPO}@main", "--label", "split=train") == \
        ["images/cat/c1.jpg", "images/cat/c3.jpg", "images/dog/d1.jpg", "unicodé/ß.jpg"]
    # several: all of them
    assert ls(f"{REPO}@main", "--label", "class=cat", "--label", "split=train") == \
        ["images/cat/c1.jpg", "images/cat/c3.jpg"]
    assert ls(f"{REPO}@main", "--label", "class=cat", "--label", "split=test") == []
    # a key alone: any value
    assert ls(f"{REPO}@main", "--label", "note") == ["images/cat/c1.jpg"]
    assert ls(f"{REPO}@main", "--label", "class", "--label", "split=test") == ["images/bird/b1.jpg"]
    # values with spaces and non-ASCII
    assert ls(f"{REPO}@main", "--label", "class=chat noir é") == ["unicodé/ß.jpg"]
    assert ls(f"{REPO}@main", "--label", "note=fluffy, orange") == ["images/cat/c1.jpg"]
    # under a path: relative to it
    assert ls(f"{REPO}@main:images", "--label", "split=train") == \
        ["cat/c1.jpg", "cat/c3.jpg", "dog/d1.jpg"]
    assert ls(f"{REPO}@main:images/cat", "--label", "class=cat") == ["c1.jpg", "c2.jpg", "c3.jpg"]
    # nothing matches: empty, success
    assert cli.run("ls", f"{REPO}@main", "--label", "class=unicorn").stdout == b""
    assert cli.run("ls", f"{REPO}@main", "--label", "nokey").stdout == b""
    for bad in ("Bad=1", "=1", "a b"):
        p = cli.run("ls", f"{REPO}@main", "--label", bad, rc=None)
        assert p.returncode in (1, 2) and p.stdout == b"", (bad, p)
    # JSON: the usual entries, only for the matching files
    full = {e["path"]: e for e in cli.json("ls", "-r", f"{REPO}@main")}
    got = cli.json("ls", f"{REPO}@main", "--label", "class=cat")
    assert got == [full[p] for p in CATS]
    sub = {e["path"]: e for e in cli.json("ls", "-r", f"{REPO}@main:images")}
    assert cli.json("ls", f"{REPO}@main:images", "--label", "class=dog") == [sub["dog/d1.jpg"]]
    # an old version answers with its own labels
    cli.run("label", "set", REPO, "images/dog/d2.jpg", "class=cat")
    assert ls(f"{REPO}@main", "--label", "class=cat") == CATS + ["images/dog/d2.jpg"]
    assert ls(f"{REPO}@base", "--label", "class=cat") == CATS


# ---- commit --labels, carry-over, history -------------------------------------------------------------

def test_commit_with_labels(pets, src, tmp_path):
    cli = pets
    n = nlog(cli)
    v2 = tmp_path / "v2"
    shutil.copytree(src, v2, symlinks=True)
    (v2 / "images/cat/c4.jpg").write_bytes(b"a new cat\n")
    f = write(tmp_path, "l.csv", "path,class,split\nimages/cat/c4.jpg,cat,val\nimages/cat/c1.jpg,,test\n")
    cid = cli.commit(REPO, v2, "data and labels", "--labels", f)
    assert nlog(cli) == n + 1
    assert cli.head(REPO) == cid
    assert cli.cat(f"{REPO}@main:images/cat/c4.jpg") == b"a new cat\n"
    # merged with the labels carried over from the branch
    assert all_labels(cli) == merged(BASE, {"images/cat/c4.jpg": {"class": "cat", "split": "val"},
                                            "images/cat/c1.jpg": {"split": "test"}})
    # JSON Lines; a labels-only change of the same data is a commit
    g = write(tmp_path, "l.jsonl", jsonl({"path": "images/cat/c4.jpg", "labels": {"split": None}}))
    cid2 = cli.commit(REPO, v2, "labels only", "--labels", g)
    assert cid2 != cid and nlog(cli) == n + 2
    assert file_labels(cli, "images/cat/c4.jpg") == {"class": "cat"}
    # nothing changed at all: no commit
    assert cli.commit(REPO, v2, "again", "--labels", g) == cid2
    assert nlog(cli) == n + 2


def test_commit_with_labels_refused(pets, src, tmp_path):
    cli = pets
    v2 = tmp_path / "v2"
    shutil.copytree(src, v2, symlinks=True)
    (v2 / "new.txt").write_bytes(b"new\n")
    u = Unchanged(cli)
    # the path exists in the store's version but the labels name a file that DIR lacks
    f = write(tmp_path, "bad.csv", "path,class\nnew.txt,doc\nimages/cat/not-in-dir.jpg,cat\n")
    p = cli.commit(REPO, v2, "refused", "--labels", f, rc=1)
    assert 3 in line_numbers(p.stderr.decode()), p.stderr
    u.check()
    f = write(tmp_path, "bad.jsonl", '{"path": "new.txt", "labels": {"Bad": "x"}}\n')
    p = cli.commit(REPO, v2, "refused", "--labels", f, rc=1)
    assert 1 in line_numbers(p.stderr.decode()), p.stderr
    u.check()
    assert cli.cat(f"{REPO}@main:new.txt", rc=1) == b""
    # an unknown path that sorts before every name of the directory it would be in
    for rows in ("path,class\nAAA.txt,doc\n", "path,class\nimages/bird/a.jpg,doc\n"):
        f = write(tmp_path, "first.csv", rows)
        p = cli.commit(REPO, v2, "refused", "--labels", f, rc=1)
        assert 2 in line_numbers(p.stderr.decode()), p.stderr
        u.check()


def test_old_versions_keep_their_labels(pets, tmp_path):
    cli = pets
    du0 = cli.du(REPO)
    ls0 = file_entries(cli, REPO)
    base_id = cli.head(REPO)
    # each relabel stores no data: at most its version's labels manifest is new
    printed_commit(cli, label(cli, "set", REPO, "images/cat/c1.jpg", "split=val", "class=kitten"))
    mid = merged(BASE, {"images/cat/c1.jpg": {"split": "val", "class": "kitten"}})
    assert all_labels(cli) == mid
    du1 = cli.du(REPO)
    grown = du1["stored_bytes"] - du0["stored_bytes"]
    assert 0 <= grown <= manifest_size(mid), (grown, manifest_size(mid))
    printed_commit(cli, label(cli, "rm", REPO, "unicodé/ß.jpg", "class"))
    new = merged(mid, {"unicodé/ß.jpg": {"class": None}})
    assert all_labels(cli) == new
    du2 = cli.du(REPO)
    grown = du2["stored_bytes"] - du1["stored_bytes"]
    assert 0 <= grown <= manifest_size(new), (grown, manifest_size(new))
    assert du2["commits"] == du0["commits"] + 2
    assert file_entries(cli, REPO) == ls0
    assert all_labels(cli, "base") == BASE
    assert all_labels(cli, base_id[:10]) == BASE
    assert file_labels(cli, "images/cat/c1.jpg", "base") == BASE["images/cat/c1.jpg"]
    cli.run("fsck")
    # gc keeps every version's labels
    cli.run("gc")
    assert all_labels(cli, "base") == BASE and all_labels(cli) == new


def test_labels_carry_over_by_path(pets, src, tmp_path):
    cli = pets
    v2 = tmp_path / "v2"
    shutil.copytree(src, v2, symlinks=True)
    (v2 / "images/cat/c2.jpg").write_bytes(b"new content, same path\n")     # changed: keeps labels
    (v2 / "images/bird/b1.jpg").unlink()                                    # removed: labels gone
    (v2 / "images/dog/d1.jpg").rename(v2 / "images/dog/d1-renamed.jpg")     # moved: labels stay behind
    (v2 / "images/cat/c5.jpg").write_bytes(b"new file\n")                   # new: no labels
    (v2 / "unicodé/ß.jpg").unlink()
    (v2 / "unicodé/ß.jpg").mkdir()                                          # a file became a directory
    (v2 / "unicodé/ß.jpg/inner.jpg").write_bytes(b"inner\n")
    cli.commit(REPO, v2, "data only")
    want = {p: BASE[p] for p in ("images/cat/c1.jpg", "images/cat/c2.jpg", "images/cat/c3.jpg")}
    assert all_labels(cli) == want
    # committing the same data again changes nothing (the labels compare equal)
    h, n = cli.head(REPO), nlog(cli)
    assert cli.commit(REPO, v2, "same") == h and nlog(cli) == n
    # a relabel, then a data commit: the relabel is carried
    printed_commit(cli, label(cli, "set", REPO, "images/cat/c5.jpg", "class=cat"))
    (v2 / "images/cat/c3.jpg").write_bytes(b"c3 changed\n")
    cli.commit(REPO, v2, "data again")
    want["images/cat/c5.jpg"] = {"class": "cat"}
    assert all_labels(cli) == want
    # a path that comes back does not get its old labels back
    shutil.copy(src / "images/bird/b1.jpg", v2 / "images/bird/b1.jpg")
    cli.commit(REPO, v2, "bird is back")
    assert "images/bird/b1.jpg" not in all_labels(cli)
    assert all_labels(cli, "base") == BASE


# ---- diff ---------------------------------------------------------------------------------------------------

def test_diff_labels(pets, src, tmp_path):
    cli = pets
    a = cli.head(REPO)
    label(cli, "set", REPO, "images/cat/c1.jpg", "split=val")
    label(cli, "rm", REPO, "images/cat/c1.jpg", "note")
    label(cli, "set", REPO, "images/dog/d2.jpg", "class=dog")
    label(cli, "set", REPO, "unicodé/ß.jpg", "class=chat blanc")
    b = cli.head(REPO)
    text = cli.text("diff", f"{REPO}@{a}", f"{REPO}@{b}")
    assert text == ("L\timages/cat/c1.jpg\tnote: fluffy, orange -> (unset)\n"
                    "L\timages/cat/c1.jpg\tsplit: train -> val\n"
                    "L\timages/dog/d2.jpg\tclass: (unset) -> dog\n"
                    "L\tunicodé/ß.jpg\tclass: chat noir é -> chat blanc\n"), text
    rev = cli.text("diff", f"{REPO}@{b}", f"{REPO}@{a}")
    assert rev == ("L\timages/cat/c1.jpg\tnote: (unset) -> fluffy, orange\n"
                   "L\timages/cat/c1.jpg\tsplit: val -> train\n"
                   "L\timages/dog/d2.jpg\tclass: dog -> (unset)\n"
                   "L\tunicodé/ß.jpg\tclass: chat blanc -> chat noir é\n"), rev
    d = cli.json("diff", f"{REPO}@{a}", f"{REPO}@{b}")
    by = {c["path"]: c for c in d["changes"]}
    assert [c["path"] for c in d["changes"]] == ["images/cat/c1.jpg", "images/dog/d2.jpg", "unicodé/ß.jpg"]
    assert all(c["status"] == "labels" for c in d["changes"]), d["changes"]
    assert by["images/cat/c1.jpg"]["labels"] == [{"key": "note", "old": "fluffy, orange", "new": None},
                                                 {"key": "split", "old": "train", "new": "val"}]
    assert by["images/dog/d2.jpg"]["labels"] == [{"key": "class", "old": None, "new": "dog"}]
    assert by["unicodé/ß.jpg"]["labels"] == [{"key": "class", "old": "chat noir é", "new": "chat blanc"}]
    st = d["stat"]
    assert (st["added"], st["removed"], st["modified"], st["mode"]) == (0, 0, 0, 0)
    assert st["bytes_added"] == 0 and st["bytes_removed"] == 0
    # --stat: one key changed on each of three files
    label(cli, "set", REPO, "images/cat/c2.jpg", "split=train")
    label(cli, "set", REPO, "images/cat/c3.jpg", "split=val")
    label(cli, "set", REPO, "README.txt", "kind=doc")
    c = cli.head(REPO)
    ds = cli.json("diff", "--stat", f"{REPO}@{b}", f"{REPO}@{c}")
    assert "changes" not in ds and ds["stat"]["labels"] == 3, ds
    assert ", 3 labels changed;" in cli.text("diff", "--stat", f"{REPO}@{b}", f"{REPO}@{c}")
    assert cli.text("diff", f"{REPO}@{b}", f"{REPO}@{c}") == (
        "L\tREADME.txt\tkind: (unset) -> doc\n"
        "L\timages/cat/c2.jpg\tsplit: val -> train\n"
        "L\timages/cat/c3.jpg\tsplit: train -> val\n")
    # a sub-directory diff: paths relative to it
    assert cli.text("diff", f"{REPO}@{b}:images/cat", f"{REPO}@{c}:images/cat") == (
        "L\tc2.jpg\tsplit: val -> train\n"
        "L\tc3.jpg\tsplit: train -> val\n")
    # same labels: no L lines
    assert cli.text("diff", f"{REPO}@{c}", f"{REPO}@main") == ""


def test_diff_content_and_labels(pets, src, tmp_path):
    cli = pets
    a = cli.head(REPO)
    v2 = tmp_path / "v2"
    shutil.copytree(src, v2, symlinks=True)
    (v2 / "images/cat/c2.jpg").write_bytes(b"changed\n")
    (v2 / "images/cat/c9.jpg").write_bytes(b"added\n")
    f = write(tmp_path, "l.csv", "path,split\nimages/cat/c2.jpg,test\nimages/cat/c3.jpg,val\n")
    b = cli.commit(REPO, v2, "both", "--labels", f)
    text = cli.text("diff", f"{REPO}@{a}", f"{REPO}@{b}")
    assert text == ("M\timages/cat/c2.jpg\n"
                    "L\timages/cat/c2.jpg\tsplit: val -> test\n"
                    "L\timages/cat/c3.jpg\tsplit: train -> val\n"
                    "A\timages/cat/c9.jpg\n"), text
    d = cli.json("diff", f"{REPO}@{a}", f"{REPO}@{b}")
    by = {c["path"]: c for c in d["changes"]}
    assert [c["path"] for c in d["changes"]] == ["images/cat/c2.jpg", "images/cat/c3.jpg", "images/cat/c9.jpg"]
    assert by["images/cat/c2.jpg"]["status"] == "modified"
    assert by["images/cat/c2.jpg"]["labels"] == [{"key": "split", "old": "val", "new": "test"}]
    assert by["images/cat/c3.jpg"]["status"] == "labels"
    assert by["images/cat/c3.jpg"]["labels"] == [{"key": "split", "old": "train", "new": "val"}]
    assert by["images/cat/c9.jpg"]["status"] == "added"
    assert d["stat"]["modified"] == 1 and d["stat"]["added"] == 1


# ---- values: unicode, limits ------------------------------------------------------------------------------

def test_unicode_and_limits(pets, tmp_path):
    cli = pets
    label(cli, "set", REPO, "images/cat/c2.jpg", "desc=chat noir é", "emoji=😀 日本語", "tab=a\tb",
          "sp= leading and trailing ")
    got = file_labels(cli, "images/cat/c2.jpg")
    assert got == {"class": "cat", "split": "val", "desc": "chat noir é", "emoji": "😀 日本語",
                   "tab": "a\tb", "sp": " leading and trailing "}
    assert "desc=chat noir é\n".encode() in cli.run("label", "show", f"{REPO}@main:images/cat/c2.jpg").stdout
    # the limits themselves are fine: a 128-byte key, a 4096-byte value (2-byte characters)
    k128 = "a" + "b" * 126 + "9"
    v4096 = "é" * 2048
    assert len(k128) == 128 and len(v4096.encode()) == 4096
    f = write(tmp_path, "lim.jsonl", jsonl({"path": "README.txt", "labels": {k128: v4096, "0.a-b_c": "x"}}))
    printed_commit(cli, label(cli, "import", REPO, f))
    assert file_labels(cli, "README.txt") == {k128: v4096, "0.a-b_c": "x"}
    # 4097 bytes (a 2-byte character over) is not
    refused(cli, "label", "set", REPO, "README.txt", "big=" + "é" * 2048 + "x", rc=1)
    # 256 keys on a file is fine; a 257th is refused, by import and by set
    f = write(tmp_path, "k256.jsonl",
              jsonl({"path": "images/dog/d2.jpg", "labels": {f"k{i:03d}": f"v{i}" for i in range(256)}}))
    printed_commit(cli, label(cli, "import", REPO, f))
    assert len(file_labels(cli, "images/dog/d2.jpg")) == 256
    refused(cli, "label", "set", REPO, "images/dog/d2.jpg", "one=more", rc=1)
    # replacing an existing key of a full file is fine
    printed_commit(cli, label(cli, "set", REPO, "images/dog/d2.jpg", "k000=changed"))
    assert file_labels(cli, "images/dog/d2.jpg")["k000"] == "changed"
    st = cli.json("label", "stats", f"{REPO}@main")
    assert st["keys"]["k255"] == {"files": 1, "values": {"v255": 1}}


def test_unicode_paths_csv(plain, tmp_path):
    cli = plain
    f = write(tmp_path, "u.csv", "path,class\nunicodé/ß.jpg,chat noir é\n")
    printed_commit(cli, label(cli, "import", REPO, f))
    assert cli.text("ls", f"{REPO}@main", "--label", "class=chat noir é") == "unicodé/ß.jpg\n"
    assert cli.run("label", "show", f"{REPO}@main").stdout == "unicodé/ß.jpg\tclass=chat noir é\n".encode()


# ---- a large import --------------------------------------------------------------------------------------------

def test_import_100000_rows(cli, tmp_path):
    """25,000 files x 4 keys in CSV long form: 100,000 rows in one import."""
    root = tmp_path / "many"
    paths = []
    for d in range(50):
        dd = root / f"d{d:02d}"
        dd.mkdir(parents=True)
        for i in range(500):
            (dd / f"f{i:04d}.jpg").write_bytes(f"{d} {i}\n".encode())
            paths.append(f"d{d:02d}/f{i:04d}.jpg")
    cli.create("datasets/many")
    cli.commit("datasets/many", root, "data")
    classes = ["cat", "dog", "bird", "fish", "frog"]
    rows = ["path,key,value"]
    for n, p in enumerate(paths):
        rows += [f"{p},class,{classes[n % 5]}", f"{p},split,{'train' if n % 10 < 8 else 'val'}",
                 f"{p},idx,{n}", f"{p},group,g{n % 97}"]
    assert len(rows) == 100_001
    f = write(tmp_path, "big.csv", "\n".join(rows) + "\n")
    t0 = time.monotonic()
    p = cli.run("label", "import", "datasets/many", f, "-m", "100k rows")
    took = time.monotonic() - t0
    cid = p.stdout.decode().strip()
    assert is_oid(cid) and cli.head("datasets/many") == cid
    print(f"100,000-row import: {took:.2f} s")
    st = cli.json("label", "stats", "datasets/many@main")
    assert st["files"] == 25_000 and st["labelled"] == 25_000
    assert st["keys"]["class"]["values"] == {c: 5000 for c in classes}
    assert st["keys"]["split"]["values"] == {"train": 20_000, "val": 5000}
    assert st["keys"]["idx"]["files"] == 25_000 and len(st["keys"]["idx"]["values"]) == 25_000
    assert len(cli.text("ls", "datasets/many@main", "--label", "class=frog").splitlines()) == 5000
    assert file_labels(cli, "d49/f0499.jpg", repo="datasets/many") == \
        {"class": "frog", "split": "val", "idx": "24999", "group": f"g{24999 % 97}"}
