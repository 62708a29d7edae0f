"""Helpers of the FUSE mount tests: /proc, the CLI, mounting and unmounting."""

import json
import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC_ROOT = HERE.parent.parent

# The CLI runner and environment are the integration suite's.
sys.path.insert(0, str(HERE.parent / "integration"))
from clihelpers import SANITIZER_MARKERS, base_env  # noqa: E402
from clihelpers import Artifs as CliArtifs  # noqa: E402

EXIT_WAIT = 10.0    # seconds a daemon gets to exit after its unmount


def _binary():
    env = os.environ.get("ARTIFS_BIN")
    if env:
        return Path(env)
    # convenience when pytest is run by hand from a source checkout
    return SRC_ROOT / "build" / "cli" / "artifs"


def _unescape(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mountinfo():
    """[(mountpoint, fstype, source, mount options, super options)], in order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, b = line.rstrip("\n").split(" - ", 1)
            fa, fb = a.split(" "), b.split(" ")
            out.append((_unescape(fa[4]), fb[0], _unescape(fb[1]), fa[5], fb[2] if len(fb) > 2 else ""))
    return out


def mount_entry(path):
    """The top mount on `path` (a mountinfo tuple), or None."""
    real = os.path.realpath(path)
    found = None
    for m in mountinfo():
        if m[0] == real:
            found = m
    return found


def is_artifs_mount(path):
    m = mount_entry(path)
    return m is not None and m[1] == "fuse.artifs"


def mounts_of_type(fstype):
    return [m[0] for m in mountinfo() if m[1] == fstype]


def wait_for(cond, timeout, step=0.02):
    """Poll cond() until true or timeout; the last value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def pid_running(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return st[st.rindex(")") + 2] not in "ZX"


def daemon_pids(needle):
    """Running artifs daemons with an argument that is `needle` (a path) or below it."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        n = os.fsencode(needle)
        # "artifs ... mount MP ..." or, as mount.fuse3 runs it, "artifs STORE MP ..."
        if any(a == n or a.startswith(n + b"/") for a in argv[1:]) and \
                any(os.path.basename(a) == b"artifs" for a in argv[:1]) and pid_running(int(d)):
            pids.append(int(d))
    return pids


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_for(lambda: not pid_running(pid), 5)


def sanitizer_reports(*paths):
    """Sanitizer reports found in the given files, or files of the given dirs."""
    found = []
    for p in paths:
        p = Path(p)
        files = sorted(p.iterdir()) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            data = f.read_bytes()
            if any(m in data for m in SANITIZER_MARKERS):
                found.append(f"{f}:\n{data[:6000].decode('utf-8', 'replace')}")
    return found


def make_env(tmp, san_dir):
    """An environment that cannot reach a real store, with sanitizer logs in san_dir."""
    Path(tmp).mkdir(parents=True, exist_ok=True)
    Path(san_dir).mkdir(parents=True, exist_ok=True)
    env = base_env(Path(tmp))
    # a detached daemon's stderr is /dev/null: sanitizers must write to files
    for var, name in (("ASAN_OPTIONS", "asan"), ("UBSAN_OPTIONS", "ubsan")):
        prev = env.get(var, "")
        env[var] = (prev + ":" if prev else "") + f"log_path={san_dir}/{name}"
    return env


class Artifs(CliArtifs):
    """The integration suite's runner, with the calls these tests use."""

    def run(self, *args, rc=0, store=True, env=None, timeout=300):
        return super().run(*args, rc=rc, store=store, env=env, input=b"", timeout=timeout)

    def fail(self, *args, rc=1, **kw):
        """A command that must fail with the documented 'artifs: error:' line; its stderr."""
        return super().fail(*args, rc=rc, **kw).stderr.decode("utf-8", "replace")

    def create(self, kind, name):
        self.run("create", kind, name)

    def show(self, rev):
        return json.loads(self.run("show", rev, "--json").stdout)

    def tag(self, repo, name, rev=None):
        self.run("tag", repo, name, *([rev] if rev else []))

    def branch(self, repo, name, rev=None):
        self.run("branch", repo, name, *([rev] if rev else []))


class Mount:
    """One mounted daemon.  `path` is the mount point (a Path)."""

    def __init__(self, path, store, log, env):
        self.path = Path(path)
        self.store = Path(store)
        self.log = Path(log) if log else None
        self.env = env
        self.pid = None         # the daemon's pid, once known
        self.proc = None        # Popen of a --foreground daemon
        self.stderr = None      # its stderr file
        self.expect_failure = False     # a test made it exit non-zero on purpose

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def find_pid(self, timeout=10):
        """The daemon's pid: from its log line 'artifs[PID]: info: serving', or /proc."""
        def look():
            m = re.search(r"artifs\[(\d+)\]: info: serving", self.log_text())
            if m:
                return int(m.group(1))
            pids = daemon_pids(str(self.path))
            return pids[0] if len(pids) == 1 else None
        self.pid = wait_for(look, timeout, 0.05)
        return self.pid

    def running(self):
        return self.pid is not None and pid_running(self.pid)

    def wait_exit(self, timeout=EXIT_WAIT):
        """True if the daemon exited within timeout (a foreground one is reaped)."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        return self.pid is None or wait_for(lambda: not pid_running(self.pid), timeout)


def unmount_and_reap(m):
    """Unmount m whatever state it is in; the problems found (empty: clean)."""
    problems = []
    if is_artifs_mount(m.path):
        r = subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True, timeout=60)
        if r.returncode:
            # busy (a test still holds a file) or a dead daemon: detach lazily
            subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True, timeout=60)
        if not wait_for(lambda: not is_artifs_mount(m.path), 10):
            problems.append(f"{m.path} still mounted after fusermount3 -u and -uz")
    pids = {m.pid} if m.pid else set()
    pids |= set(daemon_pids(str(m.path)))
    if m.proc is not None:
        pids.add(m.proc.pid)
    for pid in sorted(pids):
        if pid == (m.proc.pid if m.proc else None):
            if not m.wait_exit():
                problems.append(f"foreground daemon {pid} did not exit within {EXIT_WAIT} s of unmount")
                m.proc.kill()
                m.proc.wait(10)
        elif not wait_for(lambda: not pid_running(pid), EXIT_WAIT):
            problems.append(f"daemon {pid} did not exit within {EXIT_WAIT} s of unmount; killed")
            _kill(pid)
    return problems


def evict(path):
    """Write path's dirty pages out and drop its pages from the page cache, as if
    the machine had just started: the next read of it goes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            os.fsync(fd)
        except OSError as e:        # a read-only file system has nothing to write
            if e.errno not in (errno.EINVAL, errno.EROFS):
                raise
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def staged_chunks(log_text):
    """Chunks the daemon served from its staging buffers (logged at unmount); None if
    it logged no such line."""
    found = re.findall(r"staging: (\d+) chunks served from buffers", log_text)
    return int(found[-1]) if found else None


def run(cmd, rc=0, timeout=300, **kw):
    """Run an ordinary tool; assert its exit status; bytes out."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout, **kw)
    if rc is not None:
        assert p.returncode == rc, (f"{cmd}: exit {p.returncode}, wanted {rc}\n"
                                    f"stdout: {p.stdout[:3000]!r}\nstderr: {p.stderr[:3000]!r}")
    return p


def errno_of(fn, *args, **kw):
    """Call fn; the errno it failed with, or None if it succeeded."""
    try:
        r = fn(*args, **kw)
    except OSError as e:
        return e.errno
    if isinstance(r, int) and fn is os.open:
        os.close(r)
    return None
