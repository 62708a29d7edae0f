"""A local S3 server for the remote tests: s3rver, started by s3rver_start.js.

s3rver (npm, pinned to 3.7.1) is installed once into a cache outside the
source tree: ``$ARTIFS_TEST_CACHE/s3rver`` if that variable is set, else
``~/.cache/artifs-test/s3rver``.  The wrapper script adds S3's conditional
writes, SigV4 verification and fault injection (see its header comment).

Use the ``s3`` fixture (import it into the test module: ``from s3server
import s3``) or the ``s3_server(directory)`` context manager; list_keys()
reads a bucket without artifs.  Without node and npm, or when the
install fails, the fixture fails: it never skips.
"""

import contextlib
import fcntl
import json
import os
import selectors
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

S3RVER_VERSION = "3.7.1"
BUCKET = "artifs-test"
PREFIX = "remote"
ACCESS_KEY = "S3RVER"  # s3rver's built-in account
SECRET_KEY = "S3RVER"
REGION = "us-east-1"

HERE = Path(__file__).resolve().parent
START_JS = HERE / "s3rver_start.js"

_installed = None
_node_flags = None


def cache_dir():
    root = os.environ.get("ARTIFS_TEST_CACHE")
    if root:
        return Path(root) / "s3rver"
    return Path.home() / ".cache" / "artifs-test" / "s3rver"


def _has_s3rver(d):
    try:
        pkg = json.loads((d / "node_modules" / "s3rver" / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return pkg.get("version") == S3RVER_VERSION


def ensure_s3rver():
    """(node, module dir): installs s3rver on first use; pytest.fail when impossible."""
    global _installed
    if _installed:
        return _installed
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("the S3 remote tests run s3rver and need node and npm "
                    "(Debian: apt-get install nodejs npm)", pytrace=False)
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs install once
        if not _has_s3rver(d):
            cmd = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(d),
                   f"s3rver@{S3RVER_VERSION}"]
            try:
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=600)
                out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
            except subprocess.TimeoutExpired:
                out, rc = "(timed out after 600 s)", "timeout"
            if rc != 0 or not _has_s3rver(d):
                pytest.fail(f"cannot install s3rver for the S3 tests: {' '.join(cmd)} "
                            f"exited {rc}:\n{out[-3000:]}", pytrace=False)
    _installed = (node, d)
    return _installed


def node_flags(node):
    """s3rver 3.7.1 encrypts ListObjectsV2 continuation tokens with DES, which
    OpenSSL 3 has only in its legacy provider: enable it where node knows how."""
    global _node_flags
    if _node_flags is None:
        p = subprocess.run([node, "--openssl-legacy-provider", "-e", "0"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _node_flags = ["--openssl-legacy-provider"] if p.returncode == 0 else []
    return _node_flags


class S3Server:
    """One s3rver process; stop() and start() keep the port and the data."""

    def __init__(self, directory, bucket=BUCKET, prefix=PREFIX):
        self.node, self.module_dir = ensure_s3rver()
        self.dir = Path(directory)
        self.data = self.dir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "s3rver.log"
        self.bucket = bucket
        self.prefix = prefix
        self.port = 0
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self):
        return self.url_for(self.prefix)

    def url_for(self, prefix=""):
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    @property
    def env(self):
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def client_env(self, base=None, **extra):
        """base (default os.environ) without AWS_*/ARTIFS_S3_* settings, plus env and extra."""
        base = os.environ if base is None else base
        e = {k: v for k, v in base.items()
             if not k.startswith("AWS_") and not k.startswith("ARTIFS_S3_")}
        e.update(self.env)
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def start(self, timeout=30):
        assert self.proc is None, "already running"
        with open(self.log, "ab") as log:
            # stdin is a pipe that only we hold: the server exits when we do
            self.proc = subprocess.Popen(
                [self.node, *node_flags(self.node), str(START_JS), str(self.module_dir), str(self.data),
                 str(self.port), self.bucket],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            c = os.read(self.proc.stdout.fileno(), 1)
            if not c:
                break
            line += c
        sel.close()
        words = line.split()
        if len(words) != 2 or words[0] != b"listening":
            self.stop()
            pytest.fail(f"s3rver did not start (port {self.port}): {line!r}\n"
                        f"{self.log.read_text(errors='replace')[-3000:]}", pytrace=False)
        self.port = int(words[1])
        return self

    def stop(self):
        """Kill the server (the remote is gone until start())."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc = None

    def pause(self):
        """SIGSTOP: connections are accepted by the kernel, nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def fault(self, **kw):
        """Inject failures; see s3rver_start.js (fail, status, code, store_then_fail)."""
        req = urllib.request.Request(f"{self.endpoint}/__fault", method="PUT",
                                     data=json.dumps(kw).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 204


def list_keys(remote_url, env, prefix=""):
    """Keys under s3://BUCKET/PREFIX (relative to it, in the server's order),
    read without artifs: an anonymous ListObjectsV2, which s3rver allows."""
    bucket, _, root = remote_url[len("s3://"):].partition("/")
    root = root.strip("/") + "/" if root.strip("/") else ""
    ns = "{http://doc.s3.amazonaws.com/2006-03-01/}"
    keys, token = [], None
    while True:
        q = {"list-type": "2", "prefix": root + prefix}
        if token:
            q["continuation-token"] = token
        url = f"{env['AWS_ENDPOINT_URL']}/{bucket}?{urllib.parse.urlencode(q)}"
        with urllib.request.urlopen(url, timeout=30) as r:
            doc = ET.fromstring(r.read())
        keys += [c.findtext(f"{ns}Key")[len(root):] for c in doc.iter(f"{ns}Contents")]
        if doc.findtext(f"{ns}IsTruncated") != "true":
            return keys
        token = doc.findtext(f"{ns}NextContinuationToken")


@contextlib.contextmanager
def s3_server(directory, **kw):
    srv = S3Server(directory, **kw)
    try:
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture
def s3(tmp_path):
    """A running s3rver with an empty bucket; .url is s3://BUCKET/PREFIX."""
    with s3_server(tmp_path / "s3") as srv:
        yield srv
