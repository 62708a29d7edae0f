"""Environments, promotion, rollback, the ref log, deployment hooks and GitOps.

Every test drives the real binary against its own store (fixtures in
conftest.py).  Hooks are real executables in STORE/hooks; GitOps remotes are
real bare git repositories, checked with the `git` command.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clihelpers import is_oid

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent.parent / "hooks" / "examples"
REPO = "models/clf"

HISTORY_KEYS = {"seq", "time", "date", "ref", "op", "from", "to", "author", "reason", "user", "host",
                "no_verify", "hooks"}
PIN_KEYS = ["repository", "environment", "commit", "tree", "tags", "message", "promoted_by",
            "promoted_at"]
BOT = "Deploy Bot <bot@example.org>"


# ---- helpers ---------------------------------------------------------------------------

def err(p):
    return p.stderr.decode("utf-8", "replace")


def out(p):
    return p.stdout.decode("utf-8", "replace")


def write_tree(root, files):
    """files: {relative path: bytes or str}; (data, mode) tuples set the mode."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for rel, data in files.items():
        mode = 0o644
        if isinstance(data, tuple):
            data, mode = data
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(p, mode)
    return root


class Versions:
    """Commits versions of one repository: v(n) writes a tree and commits it."""

    def __init__(self, cli, tmp_path, repo=REPO):
        self.cli, self.tmp, self.repo, self.n = cli, tmp_path, repo, 0
        cli.create(repo)

    def commit(self, files=None, msg=None, meta=(), extra=(), branch=None):
        self.n += 1
        files = files if files is not None else {"weights.bin": f"weights of version {self.n}\n",
                                                 "version.txt": f"{self.n}\n"}
        d = write_tree(self.tmp / f"src{self.n}", files)
        args = [a for kv in meta for a in ("--meta", kv)] + list(extra)
        spec = self.repo + (f"@{branch}" if branch else "")
        return self.cli.commit(spec, d, msg or f"version {self.n}", *args)


def promote(cli, rev, env, *extra, repo=REPO, rc=0):
    p = cli.run("promote", repo, rev, env, *extra, rc=rc)
    if rc == 0:
        lines = out(p).splitlines()
        assert len(lines) == 1 and is_oid(lines[0]), f"promote printed {out(p)!r}"
    return p


def history(cli, repo=REPO, env=None, all=False):
    args = ["history", repo] + ([env] if env else []) + (["--all"] if all else [])
    return cli.json(*args)


def envs(cli, repo=REPO):
    return {e["name"]: e for e in cli.json("envs", repo)}


def env_at(cli, env, repo=REPO):
    e = envs(cli, repo).get(env)
    return e["commit"] if e else None


def hook(store, name, text, mode=0o755):
    """Install STORE/hooks/NAME (NAME may be 'pre-promote.d/10-x')."""
    p = Path(store) / "hooks" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.chmod(p, mode)
    return p


def recorder(store, name, outdir, status=0, stderr=""):
    """A hook that saves its stdin document, environment, cwd and argv as JSON in outdir."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return hook(store, name, f"""#!{sys.executable}
import json, os, sys
doc = json.loads(sys.stdin.read())
out = {str(outdir)!r}
os.makedirs(out, exist_ok=True)
n = len(os.listdir(out))
with open(os.path.join(out, "%03d.json" % n), "w") as f:
    json.dump({{"doc": doc, "env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv,
               "hook": {name!r}}}, f)
sys.stderr.write({stderr!r})
sys.exit({status})
""")


def records(outdir):
    outdir = Path(outdir)
    if not outdir.exists():
        return []
    return [json.loads(p.read_text()) for p in sorted(outdir.iterdir())]


def git(*args, cwd=None, rc=0):
    cmd = ["git", "-c", "user.name=Plain Git", "-c", "user.email=git@example.org",
           "-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false"] + [str(a) for a in args]
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                       env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                            "GIT_TERMINAL_PROMPT": "0"})
    if rc is not None:
        assert p.returncode == rc, f"git {' '.join(cmd[9:])}: exit {p.returncode}\n{p.stderr.decode()}"
    return p.stdout.decode()


def bare_remote(tmp_path, name="deploy.git"):
    r = tmp_path / name
    git("init", "-q", "--bare", "--initial-branch=main", r)
    return r


def remote_log(remote, fmt="%an <%ae>|%s", branch="main"):
    return git(f"--git-dir={remote}", "log", f"--format={fmt}", branch).splitlines()


def pin_text(remote, path, branch="main"):
    return git(f"--git-dir={remote}", "show", f"{branch}:{path}")


def pin_path(env, name="clf", kind="models"):
    return f"environments/{env}/{kind}/{name}.json"


def setup_gitops(cli, remote, push="true"):
    cli.run("config", "gitops.url", remote)
    cli.run("config", "gitops.branch", "main")
    cli.run("config", "gitops.author", BOT)
    cli.run("config", "gitops.push", push)


# ---- environments ------------------------------------------------------------------------

def test_promote_every_kind_of_rev_and_read_the_environment(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit(meta=["eval.accuracy=0.91"])
    c2 = v.commit()
    c3 = v.commit()
    cli.run("tag", REPO, "v1", c1)
    cli.run("branch", REPO, "exp", c2)

    assert out(promote(cli, "v1", "dev", "-m", "tag")).strip() == c1               # a tag
    assert out(promote(cli, "exp", "qa", "-m", "branch")).strip() == c2            # a branch
    assert out(promote(cli, c3[:8], "staging", "-m", "prefix")).strip() == c3      # a commit prefix
    assert out(promote(cli, "main", "canary")).strip() == c3                        # main
    assert out(promote(cli, "qa", "production", "-m", "env")).strip() == c2        # another environment

    # REPO@ENV everywhere a ref is accepted
    assert cli.cat(f"{REPO}@production:version.txt") == b"2\n"
    assert cli.cat(f"{REPO}@dev:version.txt") == b"1\n"
    assert [e["path"] for e in cli.json("ls", f"{REPO}@staging")] == ["version.txt", "weights.bin"]
    log = cli.json("log", f"{REPO}@production")
    assert [c["id"] for c in log] == [c2, c1]
    assert cli.json("show", f"{REPO}@dev")["id"] == c1

    # envs: one object per environment, in name order, with the documented keys
    lst = cli.json("envs", REPO)
    assert [e["name"] for e in lst] == ["canary", "dev", "production", "qa", "staging"]
    for e in lst:
        assert list(e) == ["name", "commit", "tags", "updated", "date", "moves"], e
        assert isinstance(e["updated"], int) and abs(e["updated"] - time.time()) < 120
        assert e["date"].endswith("Z") and e["moves"] == 1
    by = {e["name"]: e for e in lst}
    assert by["dev"]["commit"] == c1 and by["dev"]["tags"] == ["v1"]
    assert by["production"]["commit"] == c2 and by["production"]["tags"] == []
    assert by["staging"]["commit"] == c3
    # branches and tags are not environments
    assert "main" not in by and "v1" not in by and "exp" not in by

    # a second move counts
    promote(cli, "v1", "production")
    assert envs(cli)["production"]["moves"] == 2
    assert "production" in out(cli.run("envs", REPO))


def test_promote_refusals(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    cli.run("tag", REPO, "v1", c1)
    promote(cli, c1, "production")
    before_hist = history(cli, all=True)
    before_envs = envs(cli)

    # a branch or tag name is not an environment
    for name in ("main", "v1"):
        p = cli.fail("promote", REPO, c2, name)
        assert name in err(p) and "not an environment" in err(p), err(p)
        assert p.stdout == b""
    assert cli.head(REPO) == c2
    assert cli.json("show", f"{REPO}@v1")["id"] == c1
    # an unknown revision, a bad environment name, a missing repository
    cli.fail("promote", REPO, "nosuchrev", "staging")
    cli.fail("promote", REPO, "main", "bad name")
    cli.fail("promote", "models/nothere", "main", "staging")
    assert cli.run("promote", REPO, "main", rc=2).stdout == b""
    # an empty repository has nothing to promote
    cli.create("models/empty")
    p = cli.run("promote", "models/empty", "main", "staging", rc=None)
    assert p.returncode == 1 and "artifs: error: " in err(p)

    assert history(cli, all=True) == before_hist
    assert envs(cli) == before_envs

    # promoting to where it already is: exit 0, the id, no new history entry
    p = promote(cli, c1, "production", "-m", "again")
    assert out(p).strip() == c1
    assert "already" in err(p)
    assert history(cli, all=True) == before_hist
    assert envs(cli) == before_envs

    # committing to an environment is refused and moves nothing
    d = write_tree(tmp_path / "direct", {"version.txt": "direct\n"})
    p = cli.fail("commit", f"{REPO}@production", d, "-m", "direct")
    assert "production" in err(p) and "environment" in err(p), err(p)
    assert env_at(cli, "production") == c1
    assert cli.head(REPO) == c2
    assert history(cli, all=True) == before_hist
    # and labelling one too
    p = cli.run("label", "set", f"{REPO}@production", "version.txt", "k=v", rc=None)
    assert p.returncode != 0
    assert env_at(cli, "production") == c1


# ---- rollback --------------------------------------------------------------------------

def test_rollback(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1, c2, c3, c4 = (v.commit() for _ in range(4))
    cli.run("tag", REPO, "v1", c1)
    promote(cli, c1, "production", "-m", "one")
    p = cli.fail("rollback", REPO, "production")       # nothing before the first version
    assert "earlier" in err(p) or "no " in err(p), err(p)
    assert env_at(cli, "production") == c1
    assert len(history(cli, env="production")) == 1

    promote(cli, c2, "production", "-m", "two")
    promote(cli, c3, "production", "-m", "three")
    p = cli.run("rollback", REPO, "production", "-m", "three is broken")
    assert out(p).strip() == c2
    assert env_at(cli, "production") == c2
    # twice: two versions back (the rollback itself is skipped)
    p = cli.run("rollback", REPO, "production")
    assert out(p).strip() == c1
    assert env_at(cli, "production") == c1
    assert cli.cat(f"{REPO}@production:version.txt") == b"1\n"
    # c1 came from nothing: no earlier version
    cli.fail("rollback", REPO, "production")
    assert env_at(cli, "production") == c1

    h = history(cli, env="production")
    assert [e["op"] for e in h] == ["rollback", "rollback", "promote", "promote", "promote"]
    assert [(e["from"], e["to"]) for e in h] == [(c2, c1), (c3, c2), (c2, c3), (c1, c2), (None, c1)]
    assert h[1]["reason"] == "three is broken"

    # --to: any revision
    p = cli.run("rollback", REPO, "production", "--to", c4[:10])
    assert out(p).strip() == c4 and env_at(cli, "production") == c4
    p = cli.run("rollback", REPO, "production", "--to", "v1")
    assert out(p).strip() == c1 and env_at(cli, "production") == c1
    h = history(cli, env="production")
    assert [(e["op"], e["from"], e["to"]) for e in h[:2]] == [("rollback", c4, c1), ("rollback", c1, c4)]

    # not an environment, or no such environment
    cli.fail("rollback", REPO, "main")
    cli.fail("rollback", REPO, "v1")
    cli.fail("rollback", REPO, "nosuchenv")
    assert cli.head(REPO) == c4


def test_rollback_after_interleaved_promotions(cli, tmp_path):
    """Previous = the version before the move that brought ENV to its current one."""
    v = Versions(cli, tmp_path)
    c1, c2, c3 = (v.commit() for _ in range(3))
    promote(cli, c1, "production")
    promote(cli, c2, "production")
    cli.run("rollback", REPO, "production")             # -> c1
    promote(cli, c3, "production")                       # c1 -> c3
    p = cli.run("rollback", REPO, "production")          # back to c1, not c2
    assert out(p).strip() == c1
    assert env_at(cli, "production") == c1


# ---- history --------------------------------------------------------------------------------

def test_history_fields_order_and_append_only(cli, tmp_path, env):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    t0 = int(time.time())
    promote(cli, c1, "staging", "-m", "first to staging")
    promote(cli, c1, "production", "-m", "first to production")
    promote(cli, c2, "production", "-m", "second")
    h1 = history(cli)
    cli.run("rollback", REPO, "production", "-m", "undo")
    h2 = history(cli)

    # append-only: the older entries are exactly as they were
    assert len(h2) == len(h1) + 1
    assert h2[1:] == h1
    new = h2[0]
    assert set(new) >= HISTORY_KEYS, set(new) ^ HISTORY_KEYS
    assert new["ref"] == "production" and new["op"] == "rollback"
    assert new["from"] == c2 and new["to"] == c1 and new["reason"] == "undo"
    assert new["seq"] == 3
    assert new["author"] == env["ARTIFS_AUTHOR"]
    assert new["user"] and new["host"] and new["no_verify"] is False and new["hooks"] == []
    assert t0 - 1 <= new["time"] <= time.time() + 1
    assert new["date"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(new["time"]))
    assert "gitops" not in new      # not configured

    # one environment: its moves, newest first
    hp = history(cli, env="production")
    assert [(e["seq"], e["op"], e["reason"]) for e in hp] == [
        (3, "rollback", "undo"), (2, "promote", "second"), (1, "promote", "first to production")]
    assert [e["ref"] for e in hp] == ["production"] * 3
    hs = history(cli, env="staging")
    assert [(e["seq"], e["from"], e["to"]) for e in hs] == [(1, None, c1)]
    cli.fail("history", REPO, "nosuchenv")

    # without ENV: every environment, nothing else; --all adds branches and tags
    assert {e["ref"] for e in h2} == {"production", "staging"}
    cli.run("tag", REPO, "v2", c2)
    cli.run("branch", REPO, "exp", c1)
    ha = history(cli, all=True)
    ops = {(e["ref"], e["op"]) for e in ha}
    assert {("main", "commit"), ("v2", "tag"), ("exp", "branch"), ("production", "rollback"),
            ("staging", "promote")} <= ops, ops
    assert len([e for e in ha if e["ref"] == "main" and e["op"] == "commit"]) == 2
    assert [e for e in ha if e["ref"] in ("production", "staging")] == \
        [e for e in history(cli) if e["ref"] in ("production", "staging")]
    times = [e["time"] for e in ha]
    assert times == sorted(times, reverse=True)

    # the text form: one line per move
    text = out(cli.run("history", REPO, "production")).splitlines()
    assert len(text) == 3 and "rollback" in text[0] and "undo" in text[0] and c1[:12] in text[0]


def test_history_across_environments_is_newest_first(cli, tmp_path):
    """Moves of different environments within one second keep their real order."""
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    # alternate between environments whose names sort the other way round
    promote(cli, c1, "zeta", "-m", "1")
    promote(cli, c1, "alpha", "-m", "2")
    promote(cli, c2, "zeta", "-m", "3")
    promote(cli, c2, "alpha", "-m", "4")
    cli.run("rollback", REPO, "zeta", "-m", "5")
    h = history(cli)
    assert [e["reason"] for e in h] == ["5", "4", "3", "2", "1"], \
        [(e["ref"], e["reason"], e["time"]) for e in h]


# ---- hooks ----------------------------------------------------------------------------

def test_hook_document_environment_and_order(cli, tmp_path, env):
    v = Versions(cli, tmp_path)
    c1 = v.commit({"model.bin": "0123456789", "drop.txt": "drop\n", "run.sh": "#!/bin/sh\n",
                   "keep.txt": "keep\n"}, meta=["eval.accuracy=0.93", "framework=torch"])
    c2 = v.commit({"model.bin": "01234567890123456789", "new.txt": "seven!\n",
                   "run.sh": ("#!/bin/sh\n", 0o755), "keep.txt": "keep\n"}, msg="second")
    cli.run("label", "set", REPO, "keep.txt", "class=cat", "-m", "label it")
    c3 = cli.head(REPO)
    assert cli.json("show", f"{REPO}@{c3}")["parents"] == [c2]
    cli.run("tag", REPO, "rc1", c3)
    promote(cli, c1, "staging")
    promote(cli, c1, "production")

    rec = tmp_path / "rec"
    recorder(cli.store, "pre-promote", rec)
    recorder(cli.store, "pre-promote.d/20-b", rec)
    recorder(cli.store, "pre-promote.d/10-a", rec)
    hook(cli.store, "pre-promote.d/15-not-executable", "#!/bin/sh\nexit 1\n", mode=0o644)
    hook(cli.store, "pre-promote.d/.hidden", "#!/bin/sh\nexit 1\n")
    recorder(cli.store, "post-promote", rec)
    recorder(cli.store, "post-promote.d/50-z", rec)

    env = dict(env, LEAKY_SECRET="must-not-reach-hooks")
    p = cli.run("promote", REPO, "rc1", "production", "-m", "ship it", env=env)
    assert out(p).strip() == c3
    rs = records(rec)
    assert [r["hook"] for r in rs] == ["pre-promote", "pre-promote.d/10-a", "pre-promote.d/20-b",
                                       "post-promote", "post-promote.d/50-z"]
    d = rs[0]["doc"]
    for key, want in (("event", "pre-promote"), ("repository", REPO), ("kind", "model"), ("name", "clf"),
                      ("operation", "promote"), ("ref", "production"), ("environment", "production"),
                      ("old", c1), ("new", c3), ("reason", "ship it"), ("no_verify", False)):
        assert d[key] == want, (key, d[key])
    assert d["user"]
    cm = d["commit"]
    assert cm["id"] == c3 and cm["message"] == "label it"
    assert cm["tags"] == ["rc1"]
    assert cm["environments"] == []          # never promoted before
    assert d["diff"] == {"added": 1, "removed": 1, "modified": 1, "mode": 1, "labels": 1,
                         "bytes_added": 20 + 7, "bytes_removed": 10 + 5}, d["diff"]
    e = rs[0]["env"]
    want_env = {"ARTIFS_REPO": REPO, "ARTIFS_KIND": "model", "ARTIFS_NAME": "clf",
                "ARTIFS_OPERATION": "promote", "ARTIFS_REF": "production", "ARTIFS_ENV": "production",
                "ARTIFS_OLD": c1, "ARTIFS_NEW": c3, "ARTIFS_USER": d["user"], "ARTIFS_REASON": "ship it",
                "ARTIFS_HOOK_EVENT": "pre-promote", "ARTIFS_STORE": str(cli.store.resolve())}
    for k, want in want_env.items():
        assert e.get(k) == want, (k, e.get(k))
    # a clean environment: nothing of the caller's but HOME
    assert "LEAKY_SECRET" not in e
    assert "ARTIFS_AUTHOR" not in e and "LC_ALL" not in e
    assert set(e) - set(want_env) <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_", "LC_CTYPE"}, set(e)
    assert Path(rs[0]["cwd"]).resolve() == cli.store.resolve()
    # post-promote: same document, its own event name
    post = rs[3]
    assert post["doc"]["event"] == "post-promote" and post["env"]["ARTIFS_HOOK_EVENT"] == "post-promote"
    assert post["doc"]["new"] == c3 and post["doc"]["old"] == c1
    # the history keeps every hook's result, pre then post
    hooks = history(cli, env="production")[0]["hooks"]
    assert [(x["event"], x["hook"]) for x in hooks] == [
        ("pre-promote", "pre-promote"), ("pre-promote", "pre-promote.d/10-a"),
        ("pre-promote", "pre-promote.d/20-b"), ("post-promote", "post-promote"),
        ("post-promote", "post-promote.d/50-z")]
    for x in hooks:
        assert x["status"] == 0 and x["ok"] is True and x["timed_out"] is False, x

    # a rollback runs the same hooks with operation "rollback"
    shutil.rmtree(rec)
    cli.run("rollback", REPO, "production")
    rs = records(rec)
    assert len(rs) == 5
    assert {r["doc"]["operation"] for r in rs} == {"rollback"}
    assert {r["env"]["ARTIFS_OPERATION"] for r in rs} == {"rollback"}
    assert rs[0]["doc"]["old"] == c3 and rs[0]["doc"]["new"] == c1
    cm = rs[0]["doc"]["commit"]
    assert cm["metadata"] == {"eval.accuracy": "0.93", "framework": "torch"}
    assert sorted(cm["environments"]) == ["production", "staging"]
    # a first promotion: old is null, everything added; a dataset's kind
    shutil.rmtree(rec)
    dv = Versions(cli, tmp_path / "ds", repo="datasets/imgs")
    dc = dv.commit({"a": "aaaa", "b/c": "cc"})
    cli.run("promote", "datasets/imgs", dc, "dev")
    d = records(rec)[0]["doc"]
    assert d["kind"] == "dataset" and d["name"] == "imgs" and d["old"] is None and d["new"] == dc
    assert d["commit"]["environments"] == []
    assert "ARTIFS_OLD" not in records(rec)[0]["env"] or records(rec)[0]["env"]["ARTIFS_OLD"] == ""
    assert d["diff"]["added"] == 2 and d["diff"]["bytes_added"] == 6 and d["diff"]["removed"] == 0


def test_failing_pre_promote_hook_refuses(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c1, "production")
    before = history(cli, all=True)
    ran = tmp_path / "later-ran"
    hook(cli.store, "pre-promote.d/10-gate",
         "#!/bin/sh\necho \"gate: $ARTIFS_NEW is not approved\" >&2\nexit 1\n")
    hook(cli.store, "pre-promote.d/20-later", f"#!/bin/sh\ntouch {ran}\n")
    p = cli.fail("promote", REPO, c2, "production")
    assert f"gate: {c2} is not approved" in err(p)
    assert "10-gate" in err(p)
    assert p.stdout == b""
    assert not ran.exists(), "a hook after the failing one ran"
    assert env_at(cli, "production") == c1
    assert history(cli, all=True) == before
    # a new environment is not created either
    cli.fail("promote", REPO, c2, "staging")
    assert "staging" not in envs(cli)
    cli.fail("rollback", REPO, "production", "--to", c2)
    assert env_at(cli, "production") == c1

    # --no-verify bypasses, and says so in the history
    p = cli.run("promote", REPO, c2, "production", "--no-verify", "-m", "hotfix")
    assert out(p).strip() == c2 and env_at(cli, "production") == c2
    assert not ran.exists()
    h = history(cli, env="production")[0]
    assert h["no_verify"] is True and h["reason"] == "hotfix" and h["to"] == c2
    assert h["hooks"] == []
    assert history(cli, env="production")[1]["no_verify"] is False
    assert "bypassed" in out(cli.run("history", REPO, "production")).splitlines()[0]


def test_hook_killed_by_signal_refuses(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c1, "production")
    hook(cli.store, "pre-promote", "#!/bin/sh\nkill -KILL $$\nexit 0\n")
    p = cli.fail("promote", REPO, c2, "production")
    assert "killed" in err(p), err(p)
    assert env_at(cli, "production") == c1
    assert len(history(cli, env="production")) == 1
    hook(cli.store, "pre-promote", "#!/bin/sh\nkill -TERM $$\nexit 0\n")
    cli.fail("promote", REPO, c2, "production")
    assert env_at(cli, "production") == c1
    # a hook that cannot even be started refuses too
    hook(cli.store, "pre-promote", "#!/nonexistent/interpreter\n")
    p = cli.fail("promote", REPO, c2, "production")
    assert "could not be started" in err(p), err(p)
    assert env_at(cli, "production") == c1
    assert len(history(cli, env="production")) == 1


def test_hook_timeout_refuses_and_kills_the_group(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c1, "production")
    cli.run("config", "hooks.timeout", "1")
    pidfile = tmp_path / "sleeper.pid"
    hook(cli.store, "pre-promote", f"#!/bin/sh\nsleep 30 &\necho $! > {pidfile}\nwait $!\n")
    t0 = time.monotonic()
    p = cli.fail("promote", REPO, c2, "production")
    took = time.monotonic() - t0
    sleeper = int(pidfile.read_text()) if pidfile.exists() else None
    try:
        assert took < 8, f"a 1 s hook timeout took {took:.1f} s"
        assert "timed out" in err(p), err(p)
        assert env_at(cli, "production") == c1
        assert len(history(cli, env="production")) == 1
        # the hook's children went with it
        assert sleeper is not None
        end = time.monotonic() + 3
        while time.monotonic() < end and _alive(sleeper):
            time.sleep(0.05)
        assert not _alive(sleeper), "the hook's background sleep survived the timeout"
    finally:
        if sleeper and _alive(sleeper):
            os.kill(sleeper, signal.SIGKILL)
    # a post-promote hook that times out: the promotion stands, recorded as timed out
    (cli.store / "hooks" / "pre-promote").unlink()
    hook(cli.store, "post-promote", "#!/bin/sh\nexec sleep 30\n")
    t0 = time.monotonic()
    p = cli.run("promote", REPO, c2, "production")
    assert time.monotonic() - t0 < 8
    assert env_at(cli, "production") == c2
    x = history(cli, env="production")[0]["hooks"]
    assert len(x) == 1 and x[0]["timed_out"] is True and x[0]["ok"] is False, x


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(")") + 2] not in "ZX"


def test_failing_post_promote_hook_keeps_the_promotion(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c1, "production")
    hook(cli.store, "post-promote.d/10-notify", "#!/bin/sh\necho 'chat server down' >&2\nexit 3\n")
    hook(cli.store, "post-promote.d/20-after", "#!/bin/sh\nexit 0\n")
    p = cli.run("promote", REPO, c2, "production", "-m", "go")
    assert out(p).strip() == c2
    assert "artifs: warning: " in err(p) and "chat server down" in err(p), err(p)
    assert env_at(cli, "production") == c2
    h = history(cli, env="production")[0]
    assert h["to"] == c2
    hooks = {x["hook"]: x for x in h["hooks"]}
    assert hooks["post-promote.d/10-notify"]["ok"] is False
    assert hooks["post-promote.d/10-notify"]["status"] == 3
    assert hooks["post-promote.d/10-notify"]["event"] == "post-promote"
    assert hooks["post-promote.d/20-after"]["ok"] is True       # post hooks all run
    assert "FAILED" in out(cli.run("history", REPO, "production")).splitlines()[0]


INTERRUPTIBLE = """#!/bin/sh
trap 'echo INT > {mark}; exit 3' INT
echo $$ > {started}.tmp && mv {started}.tmp {started}
while :; do sleep 0.05; done
"""


def ctrl_c(cli, tmp_path, *args):
    """Run `artifs ARGS` as a terminal's foreground job and press Ctrl-C (SIGINT
    to its process group) once the hook wrote `started`.  Returns (process,
    stdout, stderr, hook pid)."""
    started = tmp_path / "started"
    p = subprocess.Popen([cli.bin, "--store", str(cli.store), *map(str, args)], env=cli.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    hpid = None
    try:
        end = time.monotonic() + 60
        while not started.exists() and time.monotonic() < end and p.poll() is None:
            time.sleep(0.02)
        assert started.exists(), "the hook never started"
        hpid = int(started.read_text())
        os.killpg(p.pid, signal.SIGINT)      # the hook has its own group: not in this one
        o, e = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if hpid and _alive(hpid):           # never leave a hook behind, even failing
            os.killpg(hpid, signal.SIGKILL)
    started.unlink()
    return p, o.decode(), e.decode(), hpid


def test_ctrl_c_reaches_the_hook(cli, tmp_path):
    """A hook runs in its own process group (so a timeout can kill its
    children), which a terminal's Ctrl-C does not reach: artifs passes the
    signal on, waits for the hook, and ends by the signal (exit 130 in a shell)."""
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c1, "production")
    mark = tmp_path / "mark"
    text = INTERRUPTIBLE.format(mark=mark, started=tmp_path / "started")

    # pre-promote: the promotion does not happen
    hook(cli.store, "pre-promote", text)
    hook(cli.store, "pre-promote.d/20-never", f"#!/bin/sh\ntouch {tmp_path / 'never'}\n")
    t0 = time.monotonic()
    p, o, e, hpid = ctrl_c(cli, tmp_path, "promote", REPO, c2, "production")
    assert p.returncode == -signal.SIGINT, (p.returncode, e)
    assert time.monotonic() - t0 < 15
    assert mark.read_text() == "INT\n", "the hook did not get the SIGINT"
    assert not _alive(hpid)
    assert not (tmp_path / "never").exists(), "a hook ran after the interruption"
    assert "interrupted by SIGINT" in e and "production stays at " + c1[:12] in e, e
    assert o == ""
    assert env_at(cli, "production") == c1
    assert len(history(cli, env="production")) == 1
    for x in (cli.store / "hooks").iterdir():
        shutil.rmtree(x) if x.is_dir() else x.unlink()

    # post-promote: the promotion stands and its record says what happened
    mark.unlink()
    hook(cli.store, "post-promote", text)
    p, o, e, hpid = ctrl_c(cli, tmp_path, "promote", REPO, c2, "production", "-m", "go")
    assert p.returncode == -signal.SIGINT, (p.returncode, e)
    assert mark.read_text() == "INT\n"
    assert o.strip() == c2
    assert "post-promote hooks were interrupted; the promotion stands" in e, e
    assert env_at(cli, "production") == c2
    h = history(cli, env="production")[0]
    assert h["to"] == c2
    assert len(h["hooks"]) == 1 and h["hooks"][0]["interrupted"] == signal.SIGINT, h["hooks"]
    assert h["hooks"][0]["ok"] is False
    (cli.store / "hooks" / "post-promote").unlink()

    # pre-commit, while the commit's writer threads run (they must not take the signal)
    mark.unlink()
    hook(cli.store, "pre-commit", text)
    d = write_tree(tmp_path / "big", {"w.bin": os.urandom(72 << 20)})
    p, o, e, hpid = ctrl_c(cli, tmp_path, "commit", REPO, d, "-m", "big")
    assert p.returncode == -signal.SIGINT, (p.returncode, e)
    assert mark.read_text() == "INT\n"
    assert "interrupted by SIGINT while pre-commit hooks ran" in e, e
    assert cli.head(REPO) == c2


def test_pre_and_post_commit_hooks(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    rec = tmp_path / "rec"
    recorder(cli.store, "pre-commit", rec)
    recorder(cli.store, "post-commit", rec)
    c2 = v.commit({"a.txt": "aaa", "version.txt": "2\n"}, msg="two", meta=["eval.accuracy=0.5"])
    pre, post = records(rec)
    assert pre["doc"]["event"] == "pre-commit" and post["doc"]["event"] == "post-commit"
    for r in (pre, post):
        d = r["doc"]
        assert d["operation"] == "commit" and d["ref"] == "main" and d["repository"] == REPO
        assert d["old"] == c1 and d["new"] == c2, "the pre-commit hook saw another id than was committed"
        assert d["commit"]["message"] == "two" and d["commit"]["metadata"] == {"eval.accuracy": "0.5"}
        assert r["env"]["ARTIFS_REF"] == "main" and r["env"]["ARTIFS_NEW"] == c2
    assert pre["doc"]["diff"]["added"] == 1 and pre["doc"]["diff"]["removed"] == 1
    assert pre["doc"]["diff"]["modified"] == 1

    # refusing: the branch stays where it was
    shutil.rmtree(rec)
    hook(cli.store, "pre-commit", "#!/bin/sh\necho 'no commits on fridays' >&2\nexit 1\n")
    before = history(cli, all=True)
    d = write_tree(tmp_path / "three", {"version.txt": "3\n"})
    p = cli.fail("commit", REPO, d, "-m", "three")
    assert "no commits on fridays" in err(p) and p.stdout == b""
    assert cli.head(REPO) == c2
    assert history(cli, all=True) == before
    assert records(rec) == []          # no post-commit for a refused commit
    # labelling is a commit too
    p = cli.fail("label", "set", REPO, "version.txt", "class=x", "-m", "label")
    assert "no commits on fridays" in err(p)
    assert cli.head(REPO) == c2
    cli.run("label", "set", REPO, "version.txt", "class=x", "-m", "label", "--no-verify")
    c2l = cli.head(REPO)
    assert c2l != c2

    # --no-verify commits and is recorded
    c3 = cli.commit(REPO, d, "three", "--no-verify")
    assert cli.head(REPO) == c3
    top = [e for e in history(cli, all=True) if e["ref"] == "main"][0]
    assert top["to"] == c3 and top["op"] == "commit" and top["from"] == c2l
    assert [r["hook"] for r in records(rec)] == ["post-commit", "post-commit"]
    assert [x["event"] for x in top["hooks"]] == ["post-commit"]
    assert top["no_verify"] is True, "history does not show the --no-verify of a commit"


def test_pre_tag_hook(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    rec = tmp_path / "rec"
    recorder(cli.store, "pre-tag", rec)
    cli.run("tag", REPO, "v1", c1)
    (d,) = [r["doc"] for r in records(rec)]
    assert d["event"] == "pre-tag" and d["operation"] == "tag" and d["ref"] == "v1" and d["new"] == c1
    hook(cli.store, "pre-tag", "#!/bin/sh\necho \"tag $ARTIFS_REF: use semver\" >&2\nexit 1\n")
    p = cli.fail("tag", REPO, "latest", c1)
    assert "tag latest: use semver" in err(p)
    assert [t["name"] for t in cli.json("tag", REPO, "--list")] == ["v1"]
    cli.fail("tag", REPO, "latest")
    cli.run("tag", REPO, "latest", c1, "--no-verify")
    assert [t["name"] for t in cli.json("tag", REPO, "--list")] == ["latest", "v1"]


# ---- the shipped example hooks -------------------------------------------------------------

def install_example(store, example, as_name):
    dst = Path(store) / "hooks" / as_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(EXAMPLES / example, dst)
    assert os.access(dst, os.X_OK), f"{example} is not executable"
    return dst


def test_example_accuracy_gate(cli, tmp_path):
    v = Versions(cli, tmp_path)
    good = v.commit(meta=["eval.accuracy=0.95"])
    low = v.commit(meta=["eval.accuracy=0.80"])
    none = v.commit()
    bad = v.commit(meta=["eval.accuracy=high"])
    install_example(cli.store, "pre-promote-accuracy-gate", "pre-promote.d/10-accuracy")

    # production needs staging first
    p = cli.fail("promote", REPO, good, "production")
    assert "staging" in err(p)
    assert "production" not in envs(cli)
    promote(cli, good, "staging")                  # other environments pass untouched
    promote(cli, low, "dev")
    promote(cli, none, "dev")
    promote(cli, good, "production")
    assert env_at(cli, "production") == good

    promote(cli, low, "staging")
    p = cli.fail("promote", REPO, low, "production")
    assert "below" in err(p) and "0.8" in err(p), err(p)
    assert env_at(cli, "production") == good

    promote(cli, none, "staging")
    p = cli.fail("promote", REPO, none, "production")
    assert "eval.accuracy" in err(p)
    promote(cli, bad, "staging")
    p = cli.fail("promote", REPO, bad, "production")
    assert "not a number" in err(p)

    # "was in staging" is enough: staging has moved on from `good`
    cli.run("rollback", REPO, "production", "--to", none, "--no-verify")
    promote(cli, good, "production")
    assert env_at(cli, "production") == good

    # a lower threshold from STORE/hooks/accuracy-threshold
    (cli.store / "hooks" / "accuracy-threshold").write_text("0.75\n")
    promote(cli, low, "production")
    assert env_at(cli, "production") == low
    (cli.store / "hooks" / "accuracy-threshold").write_text("0.99\n")
    cli.fail("promote", REPO, good, "production")
    assert env_at(cli, "production") == low


def test_example_tagged_only_and_notify(cli, tmp_path):
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    install_example(cli.store, "pre-promote-tagged-only", "pre-promote.d/20-tagged")
    install_example(cli.store, "post-promote-notify", "post-promote.d/50-notify")
    log = cli.store / "hooks" / "promotions.log"

    p = cli.fail("promote", REPO, c1, "production")
    assert "has no tag" in err(p) and c1 in err(p)
    assert not log.exists()
    promote(cli, c1, "staging", "-m", "untagged is fine here")
    cli.run("tag", REPO, "v1.0.0", c1)
    p = promote(cli, "v1.0.0", "production", "-m", "release 1")
    assert f"notified: {REPO} production -> {c1}" in err(p)
    cli.fail("promote", REPO, c2, "production")
    assert env_at(cli, "production") == c1

    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert f"{REPO} staging none -> {c1}" in lines[0] and "untagged is fine here" in lines[0]
    assert f"{REPO} production none -> {c1}" in lines[1] and lines[1].endswith(": release 1")
    cli.run("tag", REPO, "v1.1.0", c2)
    promote(cli, c2, "production", "-m", "release 2")
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and f"production {c1} -> {c2}" in lines[2]


# ---- concurrency ----------------------------------------------------------------------

@pytest.mark.parametrize("existing", [True, False], ids=["existing-env", "new-env"])
def test_concurrent_promotions_one_wins(cli, tmp_path, existing):
    v = Versions(cli, tmp_path)
    c1, c2, c3 = (v.commit() for _ in range(3))
    if existing:
        promote(cli, c1, "production")
    before = history(cli, env="production") if existing else []
    hook(cli.store, "pre-promote", "#!/bin/sh\nsleep 1\n")
    procs = []
    for c in (c2, c3):
        procs.append((c, subprocess.Popen([cli.bin, "--store", str(cli.store), "promote", REPO, c,
                                           "production", "-m", f"race {c[:6]}"],
                                          env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    results = [(c, p.wait(60), p.stdout.read().decode(), p.stderr.read().decode()) for c, p in procs]
    for _, p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(r[1] for r in results)
    assert codes == [0, 1], results
    (winner,) = [r for r in results if r[1] == 0]
    (loser,) = [r for r in results if r[1] == 1]
    assert winner[2].strip() == winner[0]
    assert "race" in loser[3] or "moved" in loser[3], loser[3]
    assert loser[2] == ""
    assert env_at(cli, "production") == winner[0]
    h = history(cli, env="production")
    assert len(h) == len(before) + 1
    assert h[0]["to"] == winner[0] and h[1:] == before


def test_concurrent_promotions_of_different_environments_all_publish(cli, tmp_path):
    remote = bare_remote(tmp_path)
    setup_gitops(cli, remote)
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    hook(cli.store, "pre-promote", "#!/bin/sh\nsleep 0.5\n")
    jobs = [("dev", c1), ("staging", c2), ("production", c1)]
    procs = [subprocess.Popen([cli.bin, "--store", str(cli.store), "promote", REPO, c, e],
                              env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for e, c in jobs]
    res = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert [r[2] for r in res] == [0, 0, 0], res
    assert {e: env_at(cli, e) for e, _ in jobs} == dict(jobs)
    for e, c in jobs:
        check_pin(pin_text(remote, pin_path(e)), c, env=e)
        assert history(cli, env=e)[0]["gitops"]["ok"] is True
    assert len(remote_log(remote)) == 3
    assert git(f"--git-dir={remote}", "rev-list", "--merges", "main") == ""


# ---- config ---------------------------------------------------------------------------

def test_config(cli, tmp_path):
    assert cli.run("config", "gitops.url", rc=1).stdout == b""         # unset
    cli.run("config", "gitops.url", "/srv/deploy.git")
    cli.run("config", "gitops.author", BOT)
    cli.run("config", "hooks.timeout", "5")
    cli.run("config", "gitops.push", "false")
    assert out(cli.run("config", "gitops.url")) == "/srv/deploy.git\n"
    assert out(cli.run("config", "gitops.author")) == BOT + "\n"
    cfg = cli.store / "config"
    assert cfg.is_file()
    gitcfg = ["git", "config", "-f", str(cfg)]
    assert subprocess.run(gitcfg + ["gitops.url"], capture_output=True, text=True).stdout == "/srv/deploy.git\n"
    assert subprocess.run(gitcfg + ["gitops.author"], capture_output=True, text=True).stdout == BOT + "\n"
    assert subprocess.run(gitcfg + ["hooks.timeout"], capture_output=True, text=True).stdout == "5\n"
    # git writes it, artifs reads it
    subprocess.run(gitcfg + ["gitops.branch", "deploy"], check=True)
    assert out(cli.run("config", "gitops.branch")) == "deploy\n"

    lst = out(cli.run("config", "--list")).splitlines()
    assert set(lst) == {"gitops.url=/srv/deploy.git", f"gitops.author={BOT}", "hooks.timeout=5",
                        "gitops.push=false", "gitops.branch=deploy"}, lst
    # overwrite, unset
    cli.run("config", "gitops.url", "/srv/other.git")
    assert out(cli.run("config", "gitops.url")) == "/srv/other.git\n"
    cli.run("config", "--unset", "gitops.url")
    assert cli.run("config", "gitops.url", rc=1).stdout == b""
    assert subprocess.run(gitcfg + ["gitops.url"], capture_output=True).returncode == 1
    assert "gitops.url" not in out(cli.run("config", "--list"))

    # unknown keys and bad values: usage errors, nothing written
    before = cfg.read_bytes()
    for args in (("gitops.ur", "x"), ("nosuch.key",), ("hooks.timeout", "soon"), ("hooks.timeout", "0"),
                 ("gitops.push", "maybe"), ("--unset", "nosuch.key")):
        p = cli.run("config", *args, rc=2)
        assert "artifs: error: " in err(p) and p.stdout == b"", args
    assert cfg.read_bytes() == before
    assert "gitops.url" in err(cli.run("config", "gitops.ur", "x", rc=2))     # lists the known keys
    cli.run("config", rc=2)


# ---- GitOps -----------------------------------------------------------------------------

def check_pin(text, commit, env="production", repo=REPO, tags=(), message=None):
    assert text.endswith("}\n") and not text.endswith("\n\n"), repr(text[-5:])
    doc = json.loads(text)
    assert list(doc) == PIN_KEYS, list(doc)
    assert doc["repository"] == repo and doc["environment"] == env and doc["commit"] == commit
    assert is_oid(doc["tree"]) and doc["tags"] == list(tags)
    if message is not None:
        assert doc["message"] == message
    assert doc["promoted_at"].endswith("Z") and time.strptime(doc["promoted_at"], "%Y-%m-%dT%H:%M:%SZ")
    return doc


def test_gitops_publish_on_promote_and_rollback(cli, tmp_path, env):
    remote = bare_remote(tmp_path)
    setup_gitops(cli, remote)
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    cli.run("tag", REPO, "v2", c2)

    promote(cli, c1, "production", "-m", "first release")
    log = remote_log(remote)
    assert len(log) == 1, log
    author, subject = log[0].split("|", 1)
    assert author == BOT
    assert REPO in subject and "production" in subject and c1[:12] in subject, subject
    assert "first release" in git(f"--git-dir={remote}", "log", "-1", "--format=%B", "main")
    assert remote_log(remote, "%cn <%ce>") == [BOT]
    doc = check_pin(pin_text(remote, pin_path("production")), c1, message="first release")
    assert doc["tree"] == cli.json("show", f"{REPO}@{c1}")["tree"]
    assert doc["promoted_by"] == env["ARTIFS_AUTHOR"]
    h = history(cli, env="production")[0]
    assert h["gitops"]["ok"] is True and str(remote) in h["gitops"]["url"]
    assert git(f"--git-dir={remote}", "rev-parse", "main").strip().startswith(h["gitops"]["git_commit"][:12])

    promote(cli, "v2", "production", "-m", "second")
    check_pin(pin_text(remote, pin_path("production")), c2, tags=["v2"], message="second")
    cli.run("rollback", REPO, "production", "-m", "bad release")
    log = remote_log(remote)
    assert len(log) == 3 and all(x.startswith(BOT + "|") for x in log)
    assert c1[:12] in log[0] and "production" in log[0]
    check_pin(pin_text(remote, pin_path("production")), c1)
    # the no-op promotion publishes nothing
    promote(cli, c1, "production")
    assert len(remote_log(remote)) == 3
    # other environments and datasets get their own files
    promote(cli, c2, "staging")
    cli.create("datasets/imgs")
    d = write_tree(tmp_path / "ds", {"x": "1"})
    dc = cli.commit("datasets/imgs", d, "ds")
    cli.run("promote", "datasets/imgs", dc, "production")
    check_pin(pin_text(remote, pin_path("staging")), c2, env="staging", tags=["v2"])
    check_pin(pin_text(remote, pin_path("production", "imgs", "datasets")), dc, repo="datasets/imgs")
    files = git(f"--git-dir={remote}", "ls-tree", "-r", "--name-only", "main").split()
    assert sorted(files) == sorted([pin_path("production"), pin_path("staging"),
                                    pin_path("production", "imgs", "datasets")])
    assert git(f"--git-dir={remote}", "rev-list", "--merges", "main") == ""


def test_gitops_concurrent_git_push_and_linear_history(cli, tmp_path):
    remote = bare_remote(tmp_path)
    setup_gitops(cli, remote)
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c1, "production")
    # someone else pushes to the GitOps repository meanwhile
    clone = tmp_path / "clone"
    git("clone", "-q", "-b", "main", remote, clone)
    (clone / "apps").mkdir()
    (clone / "apps" / "service.yaml").write_text("replicas: 3\n")
    git("add", "apps/service.yaml", cwd=clone)
    git("commit", "-q", "-m", "scale the service", cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)

    promote(cli, c2, "production", "-m", "after the other push")
    subjects = remote_log(remote, "%s")
    assert len(subjects) == 3 and subjects[1] == "scale the service", subjects
    assert c2[:12] in subjects[0]
    assert git(f"--git-dir={remote}", "rev-list", "--merges", "main") == ""
    assert len(git(f"--git-dir={remote}", "rev-list", "--first-parent", "main").split()) == 3
    assert pin_text(remote, "apps/service.yaml") == "replicas: 3\n"
    check_pin(pin_text(remote, pin_path("production")), c2)

    # and the clone can pull it fast-forward
    git("pull", "-q", "--ff-only", cwd=clone)
    check_pin((clone / pin_path("production")).read_text(), c2)


def test_gitops_two_stores_race_to_push(artifs_bin, cli, tmp_path):
    """Two stores publishing to one GitOps repository at the same moment: a push
    that loses the race is re-applied on the new tip and retried, nothing is lost.
    (A race is timing: some rounds collide, some do not; every round must succeed.)"""
    from clihelpers import Artifs
    remote = bare_remote(tmp_path)
    other = Artifs(artifs_bin, tmp_path / "store2", cli.env).init()
    stores = (cli, other)
    ids = {}
    for n, st in enumerate(stores):
        setup_gitops(st, remote)
        v = Versions(st, tmp_path / f"src-{n}", repo=f"models/m{n}")
        ids[n] = [v.commit(), v.commit()]
    rounds = 8
    for rnd in range(rounds):
        procs = [subprocess.Popen([st.bin, "--store", str(st.store), "promote", f"models/m{n}",
                                   ids[n][rnd % 2], "production"], env=cli.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for n, st in enumerate(stores)]
        res = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
        assert [r[2] for r in res] == [0, 0], f"round {rnd}: " + " | ".join(
            r[1].decode("utf-8", "replace") for r in res if r[2])
        for n in (0, 1):
            check_pin(pin_text(remote, pin_path("production", f"m{n}")), ids[n][rnd % 2],
                      repo=f"models/m{n}")
    assert len(remote_log(remote)) == 2 * rounds
    assert git(f"--git-dir={remote}", "rev-list", "--merges", "main") == ""
    for n, st in enumerate(stores):
        assert all(e["gitops"]["ok"] for e in history(st, repo=f"models/m{n}"))


def edit_pin(clone, path, commit, msg="pin by hand"):
    git("pull", "-q", "--ff-only", cwd=clone)
    p = Path(clone) / path
    doc = json.loads(p.read_text())
    doc["commit"] = commit
    p.write_text(json.dumps(doc, indent=2) + "\n")
    git("commit", "-q", "-am", msg, cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)


def test_gitops_reconcile(cli, tmp_path):
    remote = bare_remote(tmp_path)
    setup_gitops(cli, remote)
    v = Versions(cli, tmp_path)
    c1, c2, c3 = (v.commit() for _ in range(3))
    promote(cli, c1, "staging")
    promote(cli, c1, "production")
    promote(cli, c3, "production")
    clone = tmp_path / "clone"
    git("clone", "-q", "-b", "main", remote, clone)

    # nothing to do yet
    p = cli.run("gitops", "reconcile")
    assert "moved to" not in out(p)
    assert len(history(cli, env="production")) == 2

    # a merged pull request pins an older version
    edit_pin(clone, pin_path("production"), c2, "roll production to c2")
    nlog = len(remote_log(remote))
    before = history(cli)
    p = cli.run("gitops", "reconcile", "--dry-run")
    assert c2[:12] in out(p)
    assert env_at(cli, "production") == c3 and history(cli) == before

    p = cli.run("gitops", "reconcile")
    assert "moved" in out(p) and c2[:12] in out(p), out(p)
    assert env_at(cli, "production") == c2 and env_at(cli, "staging") == c1
    h = history(cli, env="production")
    assert len(h) == 3
    assert h[0]["op"] == "reconcile" and h[0]["from"] == c3 and h[0]["to"] == c2
    assert len(remote_log(remote)) == nlog, "reconcile wrote to the GitOps repository"
    check_pin(pin_text(remote, pin_path("production")), c2)

    # idempotent
    p = cli.run("gitops", "reconcile")
    assert "moved to" not in out(p) and "0 moved" in err(p), (out(p), err(p))
    assert len(history(cli, env="production")) == 3

    # reconcile runs the pre-promote hooks: a refusal moves nothing
    edit_pin(clone, pin_path("production"), c1)
    rec = tmp_path / "rec"
    recorder(cli.store, "pre-promote", rec, status=1, stderr="frozen\n")
    p = cli.fail("gitops", "reconcile")
    assert "frozen" in err(p)
    assert env_at(cli, "production") == c2
    assert records(rec)[0]["doc"]["operation"] == "reconcile"
    p = cli.run("gitops", "reconcile", "--no-verify")
    assert env_at(cli, "production") == c1
    h = history(cli, env="production")[0]
    assert h["op"] == "reconcile" and h["no_verify"] is True

    # a pin naming a commit the store does not have
    (cli.store / "hooks" / "pre-promote").unlink()
    unknown = "0123456789abcdef0123456789abcdef"
    edit_pin(clone, pin_path("production"), unknown)
    before = history(cli, all=True)
    p = cli.fail("gitops", "reconcile")
    assert unknown in err(p), err(p)
    assert env_at(cli, "production") == c1 and history(cli, all=True) == before


def test_gitops_a_new_environment_from_git(cli, tmp_path):
    """A pin for an environment the store does not have yet creates it."""
    remote = bare_remote(tmp_path)
    setup_gitops(cli, remote)
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c1, "production")
    clone = tmp_path / "clone"
    git("clone", "-q", "-b", "main", remote, clone)
    src = json.loads((clone / pin_path("production")).read_text())
    src.update(environment="canary", commit=c2)
    dst = clone / pin_path("canary")
    dst.parent.mkdir(parents=True)
    dst.write_text(json.dumps(src, indent=2) + "\n")
    git("add", ".", cwd=clone)
    git("commit", "-q", "-m", "add canary", cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)
    cli.run("gitops", "reconcile")
    assert env_at(cli, "canary") == c2 and env_at(cli, "production") == c1
    assert history(cli, env="canary")[0]["op"] == "reconcile"


def test_gitops_reconcile_skips_bad_pins(cli, tmp_path):
    remote = bare_remote(tmp_path)
    setup_gitops(cli, remote)
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c2, "production")
    other = Versions(cli, tmp_path / "other", repo="models/other")
    oc = other.commit()
    clone = tmp_path / "clone"
    git("clone", "-q", "-b", "main", remote, clone)
    # one good change, one file that is not JSON, one pin naming another repository's commit
    edit = json.loads((clone / pin_path("production")).read_text())
    edit["commit"] = c1
    (clone / pin_path("production")).write_text(json.dumps(edit, indent=2) + "\n")
    (clone / pin_path("staging")).parent.mkdir(parents=True)
    (clone / pin_path("staging")).write_text("{ not json\n")
    foreign = dict(edit, environment="dev", commit=oc)
    (clone / pin_path("dev")).parent.mkdir(parents=True)
    (clone / pin_path("dev")).write_text(json.dumps(foreign, indent=2) + "\n")
    git("add", ".", cwd=clone)
    git("commit", "-q", "-m", "mixed", cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)

    p = cli.fail("gitops", "reconcile")
    assert pin_path("staging") in err(p), err(p)
    assert oc in err(p) or "models/other" in err(p), err(p)
    assert env_at(cli, "production") == c1                 # the good pin was applied
    assert set(envs(cli)) == {"production"}
    assert envs(cli, "models/other") == {}


def test_gitops_publish_failure_and_retry(cli, tmp_path):
    remote = bare_remote(tmp_path)
    setup_gitops(cli, remote)
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    c2 = v.commit()
    promote(cli, c1, "production")

    cli.run("config", "gitops.url", tmp_path / "no" / "such" / "repo.git")
    p = cli.fail("promote", REPO, c2, "production", "-m", "while git is away")
    assert out(p).strip() == c2                                   # the store moved
    assert env_at(cli, "production") == c2
    e = err(p)
    assert f"artifs gitops publish {REPO} production" in e, e
    assert "store" in e
    h = history(cli, env="production")[0]
    assert h["to"] == c2 and h["gitops"]["ok"] is False and h["gitops"]["error"]
    check_pin(pin_text(remote, pin_path("production")), c1)      # git still has the old pin

    cli.run("config", "gitops.url", remote)
    p = cli.run("gitops", "publish", REPO, "production")
    check_pin(pin_text(remote, pin_path("production")), c2)
    assert len(remote_log(remote)) == 2
    # publishing again changes nothing
    cli.run("gitops", "publish", REPO, "production")
    assert len(remote_log(remote)) == 2
    # publishing every environment; an unknown one fails
    promote(cli, c1, "staging")
    cli.run("gitops", "publish", REPO)
    check_pin(pin_text(remote, pin_path("staging")), c1, env="staging")
    cli.fail("gitops", "publish", REPO, "nosuchenv")
    # without a url: an error saying how to set one
    cli.run("config", "--unset", "gitops.url")
    p = cli.fail("gitops", "publish", REPO, "production")
    assert "gitops.url" in err(p)
    cli.fail("gitops", "reconcile")
    # promotions without GitOps just move
    promote(cli, c2, "staging")
    assert "gitops" not in history(cli, env="staging")[0]

    # branches and tags are not environments: no pin for them
    cli.run("config", "gitops.url", remote)
    cli.run("tag", REPO, "v1", c1)
    for ref in ("main", "v1"):
        p = cli.run("gitops", "publish", REPO, ref, rc=None)
        assert p.returncode == 1 and "artifs: error: " in err(p), (ref, p.returncode, out(p), err(p))
    files = git(f"--git-dir={remote}", "ls-tree", "-r", "--name-only", "main").split()
    assert sorted(files) == [pin_path("production"), pin_path("staging")], files


def test_gitops_path_template_and_no_push(cli, tmp_path):
    remote = bare_remote(tmp_path)
    setup_gitops(cli, remote, push="false")
    cli.run("config", "gitops.path", "pins/{env}/{kind}-{name}.json")
    v = Versions(cli, tmp_path)
    c1 = v.commit()
    promote(cli, c1, "production")
    # not pushed: the remote has nothing, the managed clone has the commit
    assert git(f"--git-dir={remote}", "rev-parse", "--verify", "-q", "main", rc=None) == ""
    wd = cli.store / "gitops"
    check_pin((wd / "pins/production/models-clf.json").read_text(), c1)
    cli.run("config", "gitops.push", "true")
    cli.run("gitops", "publish", REPO, "production")
    check_pin(pin_text(remote, "pins/production/models-clf.json"), c1)
    assert len(remote_log(remote)) == 1
