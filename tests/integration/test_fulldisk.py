"""A full file system: commit, label import and export on a size-limited tmpfs.

Each test mounts its own tmpfs (`mount -t tmpfs -o size=...`) under its
temporary directory and unmounts it in the fixture's finalizer, also when the
test fails.  Mounting needs root (or CAP_SYS_ADMIN): otherwise the tests
are skipped.

What must hold when the disk fills: the command exits 1 with an
`artifs: error:` line that says "no space" and names the store (or the output
file); no ref moves; `log` and `fsck` still work on the store; once space is
freed, the same command succeeds and the version reads back byte for byte.
"""

import errno
import os
import subprocess
import tarfile

import pytest

from clihelpers import MiB, Artifs, assert_same_tree, make_small_tree, write_random


def _mount(args):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size_mib, name) -> a fresh tmpfs directory; all are unmounted at teardown."""
    mounted = []

    def mount(size_mib, name="fs"):
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        d = tmp_path / name
        d.mkdir()
        p = _mount(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(d)])
        if p.returncode:
            pytest.skip(f"cannot mount a tmpfs: {p.stderr.decode(errors='replace').strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        if _mount(["umount", str(d)]).returncode:
            _mount(["umount", "-l", str(d)])        # still busy: detach it anyway


def remount(d, size_mib):
    p = _mount(["mount", "-o", f"remount,size={size_mib}m", str(d)])
    assert p.returncode == 0, p.stderr


def free_bytes(d):
    st = os.statvfs(d)
    return st.f_bavail * st.f_frsize


def fill(d, leave):
    """Allocate a filler file on d so that about `leave` bytes stay free; return its path."""
    path = d / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        want = max(0, free_bytes(d) - leave)
        done = 0
        while done < want:
            n = min(4 * MiB, want - done)
            try:
                os.posix_fallocate(fd, done, n)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
            done += n
    finally:
        os.close(fd)
    return path


def assert_fsck_clean(cli):
    r = cli.json("fsck")
    assert r["ok"] is True and r["faults"] == [], r


def assert_no_space_error(p, where):
    err = p.stderr.decode("utf-8", "replace")
    assert "artifs: error: " in err, err
    assert "no space" in err.lower(), err
    assert str(where) in err, f"the error does not name {where}: {err}"
    return err


def log_ids(cli, spec):
    return [c["id"] for c in cli.json("log", spec)]


def big_source(tmp_path, name, seed, size):
    """A directory of 200 small files and one big random file (outside the tmpfs)."""
    src = tmp_path / name
    make_small_tree(src / "small", seed=seed, ndirs=4, per_dir=50)
    return src, write_random(src / "big.bin", seed + 1, size)


def test_commit_that_does_not_fit_then_remount(tmpfs, tmp_path, artifs_bin, env):
    fs = tmpfs(48)
    cli = Artifs(artifs_bin, fs / "store", env).init()
    cli.create("datasets/full")
    src, _ = big_source(tmp_path, "src", 10, 80 * MiB)
    big = src / "big.bin"
    os.rename(big, tmp_path / "big.bin")           # the base commit: the small files only
    base = cli.commit("datasets/full", src, "base")
    cli.run("branch", "datasets/full", "side")
    os.rename(tmp_path / "big.bin", big)

    # 80 MiB cannot fit into a 48 MiB file system
    p = cli.fail("commit", "datasets/full", src, "-m", "too big")
    assert p.stdout == b""
    assert_no_space_error(p, cli.store)
    assert log_ids(cli, "datasets/full") == [base]
    assert log_ids(cli, "datasets/full@side") == [base]
    assert cli.text("log", "datasets/full").strip()
    assert [h["op"] for h in cli.json("history", "datasets/full", "--all")
            if h["ref"] == "main"] == ["commit", "branch"]           # no move was recorded
    assert_fsck_clean(cli)
    assert cli.json("show", "datasets/full")["id"] == base

    # gc on the full disk removes what the failed commit left behind
    cli.json("gc")
    assert_fsck_clean(cli)
    dry = cli.json("gc", "--dry-run")
    assert all(v == 0 for v in dry["removed"].values()), dry

    # more room: the same command now succeeds and reads back byte for byte
    remount(fs, 200)
    head = cli.commit("datasets/full", src, "fits now")
    assert head != base
    assert log_ids(cli, "datasets/full") == [head, base]
    assert log_ids(cli, "datasets/full@side") == [base]
    out = tmp_path / "out"
    cli.run("checkout", "datasets/full", out)
    assert_same_tree(src, out)
    assert_fsck_clean(cli)


def test_commit_fails_in_its_last_batch_then_space_is_freed(tmpfs, tmp_path, artifs_bin, env):
    """The first 64 MiB batch fits, the rest does not: orphans, then a rerun after freeing space."""
    fs = tmpfs(256)
    cli = Artifs(artifs_bin, fs / "store", env).init()
    cli.create("datasets/part")
    src, _ = big_source(tmp_path, "src", 20, 112 * MiB)
    (tmp_path / "held").mkdir()
    os.rename(src / "big.bin", tmp_path / "held" / "big.bin")
    base = cli.commit("datasets/part", src, "base")
    os.rename(tmp_path / "held" / "big.bin", src / "big.bin")
    # ~90 MiB free: the first batch fits, the whole 112 MiB does not
    filler = fill(fs, 90 * MiB)

    p = cli.fail("commit", "datasets/part", src, "-m", "too big")
    assert_no_space_error(p, cli.store)
    assert log_ids(cli, "datasets/part") == [base]
    assert_fsck_clean(cli)
    # the batch that was committed before the disk filled is garbage now
    dry = cli.json("gc", "--dry-run")
    assert dry["removed"]["chunks"] > 0 and dry["removed"]["commits"] == 0, dry

    # free the space (the filler), run the very same command again
    filler.unlink()
    head = cli.commit("datasets/part", src, "after freeing space")
    assert log_ids(cli, "datasets/part") == [head, base]
    out = tmp_path / "out"
    cli.run("checkout", "datasets/part", out)
    assert_same_tree(src, out)
    assert_fsck_clean(cli)
    # the batches of the failed run were reused: nothing is left to collect
    dry = cli.json("gc", "--dry-run")
    assert all(v == 0 for v in dry["removed"].values()), dry


def write_label_file(path, nfiles, keys):
    """path,key,value rows: nfiles files (d00/f000.txt ...) x keys keys; 1,000,000 rows for 4000 x 250."""
    with open(path, "w") as f:
        f.write("path,key,value\n")
        for fi in range(nfiles):
            p = f"d{fi // 100:02d}/f{fi % 100:03d}.txt"
            f.write("".join(f"{p},k{k},value-{(fi * 31 + k * 7) % 1000}\n" for k in range(keys)))


def test_label_import_on_a_full_disk(tmpfs, tmp_path, artifs_bin, env):
    fs = tmpfs(64)
    cli = Artifs(artifs_bin, fs / "store", env).init()
    cli.create("datasets/lab")
    src = tmp_path / "src"
    for fi in range(4000):
        p = src / f"d{fi // 100:02d}" / f"f{fi % 100:03d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"file {fi}\n")
    base = cli.commit("datasets/lab", src, "files")
    labels = tmp_path / "labels.csv"
    write_label_file(labels, 4000, 250)               # 1,000,000 labels
    filler = fill(fs, 2 * MiB)

    p = cli.fail("label", "import", "datasets/lab", labels, "-m", "a million labels")
    assert_no_space_error(p, cli.store)
    assert log_ids(cli, "datasets/lab") == [base]
    assert cli.json("label", "show", "datasets/lab@main:d00/f000.txt")["labels"] == {}
    assert_fsck_clean(cli)

    filler.unlink()
    p = cli.run("label", "import", "datasets/lab", labels, "-m", "a million labels")
    head = p.stdout.decode().strip()
    assert log_ids(cli, "datasets/lab") == [head, base]
    got = cli.json("label", "show", "datasets/lab@main:d39/f099.txt")["labels"]
    assert got == {f"k{k}": f"value-{(3999 * 31 + k * 7) % 1000}" for k in range(250)}
    stats = cli.json("label", "stats", "datasets/lab@main")
    assert stats, stats
    assert_fsck_clean(cli)


def test_export_onto_a_full_disk(cli, tmpfs, tmp_path):
    src, _ = big_source(tmp_path, "src", 30, 40 * MiB)
    cli.create("datasets/exp")
    cli.commit("datasets/exp", src, "v1")
    fs = tmpfs(16)

    for name in ("out.tar", "out.zip", "out.tar.zst"):
        out = fs / name
        p = cli.fail("export", "datasets/exp", "-o", out)
        err = p.stderr.decode("utf-8", "replace")
        assert "no space" in err.lower(), err
        assert name in err, err
        # neither the archive nor its temporary file is left behind
        assert sorted(os.listdir(fs)) == [], os.listdir(fs)
        assert free_bytes(fs) > 15 * MiB

    # with room, the export works and holds the version
    remount(fs, 128)
    out = fs / "out.tar"
    cli.run("export", "datasets/exp", "-o", out)
    assert sorted(os.listdir(fs)) == ["out.tar"]
    dest = tmp_path / "extracted"
    with tarfile.open(out) as t:
        t.extractall(dest)
    assert_same_tree(src, dest)
