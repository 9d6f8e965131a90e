#!/usr/bin/env python3
"""Backup generator: real etcd -> etcd-backup-restore snapstore + oracle.json.

Starts a real etcd (3.5.1 or 3.4.23 from .deps/) on 127.0.0.1 free ports, runs a seeded
workload through etcd's v3 JSON gateway, takes full snapshots with `etcdctl snapshot save`,
captures every watch event with a live `etcdctl watch --prefix "" --rev N -w json` and writes
the snapshots the way etcd-backup-restore's snapshotter does (see testdata/README.md and
docs/testing.md for the layout and the oracle.json format).

Usage (from the repository root):
  python3 testdata/gen/gen.py all                      # regenerate every committed fixture
  python3 testdata/gen/gen.py one --version 3.5.1 --scenario basic [--out DIR]
  python3 testdata/gen/gen.py bench --version 3.5.1 [--revisions 100000] [--db-bytes 1GiB]

Only the Python standard library is used. Compression goes through the Go oracle
(`.deps/bin/bboltoracle compress`) so compressed bytes are Go's own.
"""

import argparse
import base64
import datetime
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPS = os.environ.get("ETCD_RESTORE_DEPS") or os.path.join(ROOT, ".deps")
ORACLE_BIN = os.path.join(DEPS, "bin", "bboltoracle")
VERSIONS = ["3.5.1", "3.4.23"]
SCENARIOS = ["basic", "v1", "overlap-1043", "base-newer-1044", "covered-844", "lease-expired-1045"]
SUFFIX = {"none": "", "gzip": ".gz", "zlib": ".zlib", "lzw": ".Z"}
# Values longer than this are recorded in oracle dumps by length + sha256 only.
INLINE_VALUE_MAX = 1024
ORACLE_FORMAT = 1


def log(msg):
    print(f"[gen] {msg}", file=sys.stderr, flush=True)


def b64(b):
    return base64.b64encode(b).decode("ascii")


def unb64(s):
    return base64.b64decode(s) if s else b""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_size(s):
    s = s.strip()
    for unit, mul in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * mul)
    return int(s)


# ---------------------------------------------------------------------------------------------
# PID registry (docs/testing.md): every server we start is $DEPS/run/pids/<pid> until stopped.

PID_DIR = os.path.join(DEPS, "run", "pids")
_live_procs = []


def register(proc, what):
    os.makedirs(PID_DIR, exist_ok=True)
    with open(os.path.join(PID_DIR, str(proc.pid)), "w") as f:
        f.write(what + "\n")
    _live_procs.append(proc)


def stop_proc(proc, grace=10.0):
    """SIGTERM, bounded wait, SIGKILL; then drop the registry entry."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
    try:
        os.remove(os.path.join(PID_DIR, str(proc.pid)))
    except FileNotFoundError:
        pass
    if proc in _live_procs:
        _live_procs.remove(proc)


def stop_all():
    for p in list(_live_procs):
        stop_proc(p)


def _on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


# ---------------------------------------------------------------------------------------------
# Go oracle: compression with Go's compress/* (the bytes etcd-backup-restore writes).


def go_compress(kind, data):
    if kind == "none":
        return data
    r = subprocess.run([ORACLE_BIN, "compress", kind], input=data, capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"bboltoracle compress {kind}: {r.stderr.decode(errors='replace')}")
    return r.stdout


# ---------------------------------------------------------------------------------------------
# etcd


class Etcd:
    def __init__(self, version, workdir, name="default", token="etcd-cluster"):
        self.version = version
        bindir = os.path.join(DEPS, f"etcd-{version}")
        self.etcd = os.path.join(bindir, "etcd")
        self.etcdctl = os.path.join(bindir, "etcdctl")
        utl = os.path.join(bindir, "etcdutl")
        self.etcdutl = utl if os.path.exists(utl) else None
        for b in (self.etcd, self.etcdctl):
            if not os.path.exists(b):
                raise SystemExit(f"{b} missing: run scripts/install-test-deps")
        self.workdir = workdir
        self.name = name
        self.token = token
        self.data_dir = os.path.join(workdir, "etcd-data")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc = None
        self.conn = None

    @property
    def client_url(self):
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    def env(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        e["ETCDCTL_API"] = "3"
        return e

    def start(self, quota_bytes=None):
        cmd = [
            self.etcd,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.name}={self.peer_url}",
            f"--initial-cluster-token={self.token}",
            "--initial-cluster-state=new",
            "--log-level=warn",
            # Room for the MiB-sized values and the big benchmark db.
            "--max-request-bytes=3145728",
        ]
        if quota_bytes:
            cmd.append(f"--quota-backend-bytes={quota_bytes}")
        if self.version.startswith("3.5"):
            cmd.append("--unsafe-no-fsync")
        self.log_path = os.path.join(self.workdir, "etcd.log")
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=self.env())
        logf.close()
        register(self.proc, f"etcd {self.version} (testdata/gen) {self.client_url}")
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited: {self.log_tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=2)
                c.request("GET", "/health")
                body = c.getresponse().read()
                c.close()
                if b'"health":"true"' in body:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not become healthy: {self.log_tail()}")

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.conn:
            self.conn.close()
            self.conn = None
        if self.proc:
            stop_proc(self.proc)
            self.proc = None

    def call(self, path, body):
        """POST to the v3 JSON gateway on a kept-alive connection."""
        data = json.dumps(body).encode()
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=120)
                self.conn.request("POST", "/v3/" + path, body=data, headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                out = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"/v3/{path}: HTTP {resp.status}: {out[:500]!r}")
                return json.loads(out)
            except (OSError, http.client.HTTPException):
                if self.conn:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def ctl(self, *args, tool=None, timeout=600):
        exe = tool or self.etcdctl
        cmd = [exe]
        if exe == self.etcdctl:
            cmd += [f"--endpoints={self.client_url}", "--command-timeout=300s"]
        cmd += list(args)
        r = subprocess.run(cmd, capture_output=True, env=self.env(), timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.decode(errors='replace')}")
        return r.stdout

    # --- typed helpers ---

    def revision(self):
        """The current revision, read like the snapshotter does (a Get before anything else)."""
        return int(self.call("kv/range", {"key": b64(b"\0"), "limit": 1})["header"]["revision"])

    def range_all(self, rev):
        """Every key at `rev`, paginated (values can be MiB-sized)."""
        out, start = [], b"\0"
        while True:
            r = self.call("kv/range", {"key": b64(start), "range_end": b64(b"\0"), "revision": rev, "limit": 64})
            kvs = r.get("kvs") or []
            for kv in kvs:
                out.append(
                    {
                        "key": unb64(kv.get("key")),
                        "create_revision": int(kv.get("create_revision", 0)),
                        "mod_revision": int(kv.get("mod_revision", 0)),
                        "version": int(kv.get("version", 0)),
                        "value": unb64(kv.get("value")),
                        "lease": int(kv.get("lease", 0)),
                    }
                )
            if not r.get("more") or not kvs:
                return out
            start = out[-1]["key"] + b"\0"

    def hashkv(self, rev):
        j = json.loads(self.ctl("endpoint", "hashkv", f"--rev={rev}", "--write-out=json"))
        h = j[0]["HashKV"]
        return {"revision": rev, "hash": int(h.get("hash", 0)), "compact_revision": int(h.get("compact_revision", 0))}

    def snapshot_save(self, path):
        self.ctl("snapshot", "save", path)
        with open(path, "rb") as f:
            return f.read()

    def snapshot_db_revision(self, path):
        if self.etcdutl:
            out = self.ctl("snapshot", "status", path, "--write-out=json", tool=self.etcdutl)
        else:
            out = self.ctl("snapshot", "status", path, "--write-out=json")
        return int(json.loads(out)["revision"])

    def members(self):
        r = self.call("cluster/member/list", {})
        return [
            {
                "ID": int(m["ID"]),
                "name": m.get("name", ""),
                "peerURLs": m.get("peerURLs", []),
                "clientURLs": m.get("clientURLs", []),
            }
            for m in r.get("members", [])
        ]

    def auth_state(self):
        users = []
        for name in sorted(self.call("auth/user/list", {}).get("users") or []):
            roles = self.call("auth/user/get", {"name": name}).get("roles") or []
            users.append({"name": name, "roles": sorted(roles)})
        roles = []
        for name in sorted(self.call("auth/role/list", {}).get("roles") or []):
            perms = []
            for p in self.call("auth/role/get", {"role": name}).get("perm") or []:
                perms.append(
                    {
                        "perm_type": p.get("permType", "READ"),
                        "key": p.get("key", ""),
                        "range_end": p.get("range_end", ""),
                    }
                )
            roles.append({"name": name, "perms": perms})
        return {"users": users, "roles": roles}


# ---------------------------------------------------------------------------------------------
# Watch: a live `etcdctl watch` like the snapshotter's (prefix "", from a revision, no prev-kv).


def _approx_size(ev):
    kv = ev.get("kv", {})
    return 110 + len(kv.get("key", "")) + len(kv.get("value", ""))


class Watcher:
    def __init__(self, etcd, start_rev):
        self.start_rev = start_rev
        self.events = []  # (mod_revision, event dict as etcdctl printed it)
        self.pending_bytes = 0  # ~ JSON size of self.events in a delta (for the memory limit)
        self.max_rev = start_rev - 1
        self.error = None
        self.lock = threading.Lock()
        cmd = [
            etcd.etcdctl,
            f"--endpoints={etcd.client_url}",
            "watch",
            "--prefix",
            "",
            f"--rev={start_rev}",
            "--write-out=json",
        ]
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf, env=etcd.env(), bufsize=1 << 20
        )
        register(self.proc, f"etcdctl watch (testdata/gen) {etcd.client_url}")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for line in self.proc.stdout:
                line = line.strip()
                if not line.startswith(b"{"):
                    continue
                resp = json.loads(line)
                if resp.get("Canceled") or resp.get("CompactRevision"):
                    self.error = f"watch canceled: {line[:300]!r}"
                    return
                evs = resp.get("Events") or []
                with self.lock:
                    for ev in evs:
                        rev = int(ev["kv"]["mod_revision"])
                        self.events.append((rev, ev))
                        self.max_rev = max(self.max_rev, rev)
                        self.pending_bytes += _approx_size(ev)
        except Exception as e:  # noqa: BLE001 - reported by wait_for
            self.error = repr(e)

    def wait_for(self, rev, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.max_rev >= rev:
                    return
            if self.error:
                raise RuntimeError(self.error)
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.errf.seek(0)
                raise RuntimeError(f"watch did not reach revision {rev} (at {self.max_rev}): {self.errf.read()[-500:]!r}")
            time.sleep(0.01)

    def take(self, lo, hi):
        """Events with lo <= mod_revision <= hi, in watch order; forgets those <= hi."""
        with self.lock:
            out = [e for e in self.events if lo <= e[0] <= hi]
            self.events = [e for e in self.events if e[0] > hi]
            self.pending_bytes = sum(_approx_size(e[1]) for e in self.events)
        return out

    def stop(self):
        stop_proc(self.proc)
        self.thread.join(timeout=10)
        self.errf.close()


# ---------------------------------------------------------------------------------------------
# Go encodings


def go_time(ns, offset_min=0):
    """time.Time.MarshalJSON: RFC3339Nano (trailing zeros trimmed), zone Z or +hh:mm."""
    secs, frac = divmod(ns, 10**9)
    dt = datetime.datetime.fromtimestamp(secs, tz=datetime.timezone.utc) + datetime.timedelta(minutes=offset_min)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    f = f"{frac:09d}".rstrip("0")
    if f:
        s += "." + f
    if offset_min == 0:
        s += "Z"
    else:
        sign = "+" if offset_min > 0 else "-"
        s += f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    return s


def go_event_json(ev, ns, offset_min):
    """encoding/json of etcd-backup-restore's delta wrapper around an mvccpb.Event:
    {"etcdEvent":{"type"?,"kv":{key,create_revision,mod_revision,version,value,lease}},"time":...}
    with omitempty everywhere (PUT has no "type", empty value / zero fields vanish)."""
    kv = ev["kv"]
    parts = []
    for f in ("key", "create_revision", "mod_revision", "version", "value", "lease"):
        v = kv.get(f)
        if v:  # omitempty: "", 0 and absent are all omitted
            parts.append(f'"{f}":{json.dumps(v)}')
    inner = ""
    t = int(ev.get("type", 0) or 0)
    if t:
        inner += f'"type":{t},'
    inner += '"kv":{' + ",".join(parts) + "}"
    return '{"etcdEvent":{' + inner + '},"time":"' + go_time(ns, offset_min) + '"}'


# ---------------------------------------------------------------------------------------------
# The store and the generator


class Gen:
    def __init__(self, version, scenario, out, seed, layout="v2", tz_offset_min=0, workdir=None):
        self.version = version
        self.scenario = scenario
        self.out = out
        self.seed = seed
        self.layout = layout
        self.tz = tz_offset_min
        self.rng = random.Random(f"{seed}/{scenario}")
        self.own_workdir = workdir is None
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.workdir = workdir or tempfile.mkdtemp(prefix="etcd-restore-gen-", dir=base)
        self.etcd = Etcd(version, self.workdir)
        self.watcher = None
        # Synthetic wall clock (ns): a plausible history, independent of this machine's clock.
        self.now_ns = (1714000000 + (seed % 1000) * 86400) * 10**9
        self.rev_time = {}
        self.prev = None  # the snapshotter's PrevSnapshot: {"last": rev, "dir": v1 dir}
        self.objects = []
        self.dumps = {}
        self.hashkvs = []
        self.live = {}  # key -> value, as far as our own writes tell
        self.leases = {}  # id -> record
        self.key_lease = {}  # key -> lease id
        self.pinned = set()  # keys the random workload leaves alone
        self.compact_revision = 0
        self.notes = ""
        self.store = os.path.join(out, "store")
        self.name_counter = 0
        self.snap_seq = 0

    # --- lifecycle ---

    def __enter__(self):
        if os.path.exists(self.out):
            shutil.rmtree(self.out)
        os.makedirs(self.store)
        self.etcd.start(quota_bytes=getattr(self, "quota", None))
        return self

    def __exit__(self, *exc):
        if self.watcher:
            self.watcher.stop()
        self.etcd.stop()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- time ---

    def tick(self, lo_ms=5, hi_ms=120):
        self.now_ns += self.rng.randint(lo_ms * 10**6, hi_ms * 10**6)

    def advance(self, seconds):
        self.now_ns += int(seconds * 10**9) + self.rng.randint(0, 10**9)

    def note(self, rev):
        self.rev_time.setdefault(rev, self.now_ns)
        self.tick()
        return rev

    def event_time(self, rev):
        t = self.rev_time.get(rev)
        if t is None:
            earlier = [r for r in self.rev_time if r < rev]
            t = self.rev_time[max(earlier)] if earlier else self.now_ns
            self.rev_time[rev] = t
        # Receive latency; sometimes a coarse clock (trailing zeros that Go trims).
        t += self.rng.randint(200_000, 3_000_000)
        r = self.rng.random()
        if r < 0.05:
            t -= t % 1000
        elif r < 0.07:
            t -= t % 10**6
        elif r < 0.075:
            t -= t % 10**9
        return t

    # --- keys and values ---

    KINDS = ["pods", "configmaps", "secrets", "events", "deployments", "leases", "services"]
    NAMESPACES = ["default", "kube-system", "ns-a", "ns-b", "ns-c"]
    LIVE_TARGET = 180
    WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]

    def new_key(self):
        r = self.rng.random()
        self.name_counter += 1
        if r < 0.06:
            # Binary, not valid UTF-8 (0x80..0xff, NUL inside).
            tail = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 10)))
            return b"/bin/\xff\xfe\x00" + tail + b"\x80" + str(self.name_counter).encode()
        kind = self.rng.choice(self.KINDS)
        ns = self.rng.choice(self.NAMESPACES)
        return f"/registry/{kind}/{ns}/{kind[:-1]}-{self.name_counter:05d}".encode()

    def value(self, key, big_ok=True):
        r = self.rng.random()
        if r < 0.05:
            return b""
        if r < 0.10:
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 48)))
        if big_ok and r < 0.11:
            return self.compressible(self.rng.randint(2 << 10, 16 << 10))
        words = " ".join(self.rng.choice(self.WORDS) for _ in range(self.rng.randint(1, 12)))
        doc = {
            "apiVersion": "v1",
            "metadata": {"name": key.decode("latin-1")[-16:], "resourceVersion": str(self.rng.randint(1, 10**6))},
            "data": words,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    def compressible(self, n):
        # A short period keeps even Go's LZW (12-bit codes) output small.
        unit = f"<big {self.rng.randint(0, 9999):04d}>".encode()
        return (unit * (n // len(unit) + 1))[:n]

    # --- writes (each returns the new revision) ---

    def put(self, key, value, lease=0):
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        rev = int(self.etcd.call("kv/put", body)["header"]["revision"])
        self.live[key] = value
        old = self.key_lease.pop(key, None)
        if old and old in self.leases:
            self.leases[old]["keys"].discard(key)
        if lease:
            self.key_lease[key] = lease
            self.leases[lease]["keys"].add(key)
        return self.note(rev)

    def delete(self, key, range_end=None):
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        rev = int(self.etcd.call("kv/deleterange", body)["header"]["revision"])
        gone = [k for k in self.live if k == key or (range_end is not None and key <= k < range_end)]
        for k in gone:
            self._forget(k)
        return self.note(rev)

    def _forget(self, k):
        self.live.pop(k, None)
        lid = self.key_lease.pop(k, None)
        if lid and lid in self.leases:
            self.leases[lid]["keys"].discard(k)

    def txn(self, ops):
        """ops: [("put", key, value) | ("del", key)], distinct keys -> one revision."""
        success = []
        for op in ops:
            if op[0] == "put":
                success.append({"request_put": {"key": b64(op[1]), "value": b64(op[2])}})
            else:
                success.append({"request_delete_range": {"key": b64(op[1])}})
        rev = int(self.etcd.call("kv/txn", {"success": success})["header"]["revision"])
        for op in ops:
            if op[0] == "put":
                self.live[op[1]] = op[2]
                old = self.key_lease.pop(op[1], None)
                if old and old in self.leases:
                    self.leases[old]["keys"].discard(op[1])
            else:
                self._forget(op[1])
        return self.note(rev)

    def grant(self, ttl):
        r = self.etcd.call("lease/grant", {"TTL": str(ttl)})
        lid = int(r["ID"])
        self.leases[lid] = {
            "id": lid,
            "ttl": ttl,
            "keys": set(),
            "state": "alive",
            "granted_revision": int(r["header"]["revision"]),
            "ended_revision": 0,
        }
        self.tick()
        return lid

    def revoke(self, lid):
        r = self.etcd.call("lease/revoke", {"ID": str(lid)})
        rec = self.leases[lid]
        rec["state"] = "revoked"
        rev = int(r["header"]["revision"])
        if rec["keys"]:
            rec["ended_revision"] = rev
            self.note(rev)
        for k in list(rec["keys"]):
            self._forget(k)
        self.tick()

    def wait_expired(self, lid, timeout=30.0):
        """Blocks (without writing) until etcd has expired the lease; its key deletions are one
        revision, found via the current revision."""
        rec = self.leases[lid]
        before = self.etcd.revision()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.etcd.call("lease/timetolive", {"ID": str(lid)})
            if int(r.get("TTL", -1)) == -1:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"lease {lid} did not expire within {timeout}s")
        # The revoke's deletions commit shortly after TTL reaches -1.
        for _ in range(200):
            after = self.etcd.revision()
            if not rec["keys"] or after > before:
                break
            time.sleep(0.05)
        rec["state"] = "expired"
        if rec["keys"]:
            rec["ended_revision"] = after
            self.rev_time.setdefault(after, self.now_ns)
        for k in list(rec["keys"]):
            self._forget(k)
        self.advance(rec["ttl"])

    def compact(self, rev):
        self.etcd.call("kv/compaction", {"revision": str(rev), "physical": True})
        self.compact_revision = rev
        self.tick()

    def auth_setup(self):
        c = self.etcd.call
        c("auth/role/add", {"name": "reader"})
        c("auth/role/grant", {"name": "reader", "perm": {"permType": "READ", "key": b64(b"/registry/"), "range_end": b64(b"/registry0")}})
        c("auth/role/add", {"name": "writer"})
        c("auth/role/grant", {"name": "writer", "perm": {"permType": "READWRITE", "key": b64(b"/registry/pods/"), "range_end": b64(b"/registry/pods0")}})
        c("auth/role/grant", {"name": "writer", "perm": {"permType": "WRITE", "key": b64(b"/bin/\xff")}})
        c("auth/user/add", {"name": "alice", "password": "alice-pw"})
        c("auth/user/add", {"name": "bob", "password": "bob-pw"})
        c("auth/user/grant", {"user": "alice", "role": "reader"})
        c("auth/user/grant", {"user": "bob", "role": "reader"})
        c("auth/user/grant", {"user": "bob", "role": "writer"})
        self.tick()

    def random_op(self, big_ok=True):
        """One client write: update, delete, delete-range, multi-op txn, put with a lease, or a
        new key; the live key count hovers around LIVE_TARGET."""
        rng = self.rng
        keys = [k for k in self.live if k not in self.pinned]
        r = rng.random()
        crowded = len(keys) > self.LIVE_TARGET
        if keys and r < 0.34:
            k = rng.choice(keys)
            return self.put(k, self.value(k, big_ok))
        if keys and r < (0.62 if crowded else 0.44):
            return self.delete(rng.choice(keys))
        if keys and r < (0.65 if crowded else 0.47):
            # delete-range over a namespace of one kind (often several keys in one revision)
            kind, ns = rng.choice(self.KINDS), rng.choice(self.NAMESPACES)
            start = f"/registry/{kind}/{ns}/".encode()
            end = start[:-1] + b"0"
            if any(start <= k < end for k in keys):
                return self.delete(start, end)
        if r < 0.66:
            n = rng.randint(2, 4)
            chosen = {}
            for _ in range(n):
                if keys and rng.random() < 0.6:
                    k = rng.choice(keys)
                    chosen[k] = ("del", k) if rng.random() < 0.4 else ("put", k, self.value(k, False))
                else:
                    k = self.new_key()
                    chosen[k] = ("put", k, self.value(k, False))
            return self.txn(list(chosen.values()))
        # Only long leases: a short one may expire in etcd before we notice.
        alive = [l for l, rec in self.leases.items() if rec["state"] == "alive" and rec["ttl"] >= 60]
        if alive and r < 0.71:
            k = self.new_key()
            return self.put(k, self.value(k, False), lease=rng.choice(alive))
        k = self.new_key()
        return self.put(k, self.value(k, big_ok))

    def ops(self, n, big_ok=True):
        for _ in range(n):
            self.random_op(big_ok)

    # --- snapshots, the way etcd-backup-restore's snapshotter takes them ---

    def _write_object(self, kind, start, last, compression, final, body, snapdir):
        created = self.now_ns // 10**9
        name = f"{kind}-{start:08d}-{last:08d}-{created}{SUFFIX[compression]}{'.final' if final else ''}"
        rel = f"v2/{name}" if self.layout == "v2" else f"v1/{snapdir}/{name}"
        data = go_compress(compression, body)
        path = os.path.join(self.store, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        rec = {
            "path": rel,
            "kind": kind,
            "start_revision": start,
            "last_revision": last,
            "created_on": created,
            "compression": compression,
            "final": final,
            "size": len(data),
            "body_sha256": hashlib.sha256(body[:-32]).hexdigest(),
        }
        self.objects.append(rec)
        log(f"{self.version}/{self.scenario}: {rel} ({len(data)} bytes)")
        return rec

    def full(self, compression="gzip", final=False, racing=0):
        # The name's revision is read BEFORE the snapshot stream (snapshotter.takeFullSnapshot),
        # so writes racing with it land in the db but not in the name.
        name_rev = self.etcd.revision()
        for _ in range(racing):
            self.random_op(big_ok=False)
        self.advance(self.rng.uniform(0.5, 3))
        self.snap_seq += 1
        tmp = os.path.join(self.workdir, f"full-{self.snap_seq}.db")
        body = self.etcd.snapshot_save(tmp)
        db_rev = self.etcd.snapshot_db_revision(tmp)
        os.remove(tmp)
        if len(body) % 512 != 32 or hashlib.sha256(body[:-32]).digest() != body[-32:]:
            raise RuntimeError("etcd snapshot stream without a valid sha256 trailer")
        snapdir = f"Backup-{self.now_ns // 10**9}"
        rec = self._write_object("Full", 0, name_rev, compression, final, body, snapdir)
        rec["db_revision"] = db_rev
        self.prev = {"last": name_rev, "dir": snapdir}
        # Events collected since the last delta are dropped; the watch restarts after the name.
        if self.watcher:
            self.watcher.stop()
        self.watcher = Watcher(self.etcd, name_rev + 1)
        self.checkpoint(db_rev)
        self.advance(1)
        return rec

    def delta(self, compression="gzip", upto=None, start_at=None, keep_pending=False):
        """Writes the events after the previous snapshot up to `upto` (default: now) as one delta.
        start_at/keep_pending exist only to build upstream-failure scenarios."""
        cur = upto if upto is not None else self.etcd.revision()
        lo = (start_at if start_at is not None else self.prev["last"] + 1)
        if cur >= lo:
            self.watcher.wait_for(cur)
        if keep_pending:
            with self.watcher.lock:
                evs = [e for e in self.watcher.events if lo <= e[0] <= cur]
        else:
            evs = self.watcher.take(lo, cur)
        if not evs:
            log(f"{self.scenario}: no events since {lo - 1}; no delta (as upstream)")
            return None
        self.advance(self.rng.uniform(5, 20))
        text = "[" + ",".join(go_event_json(ev, self.event_time(rev), self.tz) for rev, ev in evs) + "]"
        body = text.encode() + hashlib.sha256(text.encode()).digest()
        last = evs[-1][0]
        rec = self._write_object("Incr", lo, last, compression, False, body, self.prev["dir"])
        rec["events"] = len(evs)
        if not keep_pending:
            self.prev = {"last": last, "dir": self.prev["dir"]}
        return rec

    # --- oracle ---

    def checkpoint(self, rev):
        if rev not in self.dumps:
            self.dumps[rev] = self.etcd.range_all(rev)
        h = self.etcd.hashkv(rev)
        if h not in self.hashkvs:
            self.hashkvs.append(h)

    def finish(self, final_revision, extra_dumps=()):
        """Oracle at the end: dumps/hashkv at the final revision and the given later revisions."""
        if self.watcher:
            self.watcher.stop()
            self.watcher = None
        for rev in sorted(set(extra_dumps) | {final_revision}):
            self.checkpoint(rev)
        # hashkv of every recorded revision that survived the compaction, as of now.
        for rev in sorted({h["revision"] for h in self.hashkvs} | set(self.dumps)):
            if rev >= self.compact_revision and rev <= final_revision:
                h = self.etcd.hashkv(rev)
                if h not in self.hashkvs:
                    self.hashkvs.append(h)
        # Lease states as the generator ends.
        for lid, rec in self.leases.items():
            if rec["state"] == "alive":
                ttl = int(self.etcd.call("lease/timetolive", {"ID": str(lid)}).get("TTL", -1))
                if ttl == -1:
                    rec["state"] = "expired"

        def kv_json(kv):
            o = {
                "key": b64(kv["key"]),
                "create_revision": kv["create_revision"],
                "mod_revision": kv["mod_revision"],
                "version": kv["version"],
            }
            if len(kv["value"]) > INLINE_VALUE_MAX:
                o["value_len"] = len(kv["value"])
                o["value_sha256"] = hashlib.sha256(kv["value"]).hexdigest()
            else:
                o["value"] = b64(kv["value"])
            o["lease"] = kv["lease"]
            return o

        def lease_json(rec):
            return {
                "id": rec["id"],
                "ttl": rec["ttl"],
                "granted_revision": rec["granted_revision"],
                "ended_revision": rec["ended_revision"],
            }

        oracle = {
            "format": ORACLE_FORMAT,
            "etcd_version": self.version,
            "scenario": self.scenario,
            "seed": self.seed,
            "layout": self.layout,
            "final_revision": final_revision,
            "compact_revision": self.compact_revision,
            "cluster": {
                "name": self.etcd.name,
                "initial_cluster_token": self.etcd.token,
                "peer_urls": [self.etcd.peer_url],
                "client_urls": [self.etcd.client_url],
            },
            "members": self.etcd.members(),
            "hashkv": sorted(self.hashkvs, key=lambda h: (h["revision"], h["compact_revision"])),
            "dumps": [{"revision": r, "kvs": [kv_json(kv) for kv in self.dumps[r]]} for r in sorted(self.dumps)],
            "objects": self.objects,
            "leases": {
                st: [lease_json(r) for r in sorted(self.leases.values(), key=lambda r: r["id"]) if r["state"] == st]
                for st in ("alive", "expired", "revoked")
            },
            "auth": self.auth,
            "notes": self.notes,
        }
        with open(os.path.join(self.out, "oracle.json"), "w") as f:
            f.write(oracle_text(oracle))


def oracle_text(oracle):
    """JSON with one record (key, object, hashkv, ...) per line: compact, yet diffable."""
    c = lambda v: json.dumps(v, separators=(",", ":"))  # noqa: E731
    lines = ["{"]
    items = list(oracle.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if k == "dumps":
            lines.append(f' "{k}": [')
            for j, d in enumerate(v):
                lines.append(f'  {{"revision":{d["revision"]},"kvs":[')
                lines += ["   " + c(kv) + ("," if n + 1 < len(d["kvs"]) else "") for n, kv in enumerate(d["kvs"])]
                lines.append("  ]}" + ("," if j + 1 < len(v) else ""))
            lines.append(" ]" + comma)
        elif isinstance(v, list) and v:
            lines.append(f' "{k}": [')
            lines += ["  " + c(x) + ("," if n + 1 < len(v) else "") for n, x in enumerate(v)]
            lines.append(" ]" + comma)
        else:
            lines.append(f' "{k}": {c(v)}{comma}')
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Scenarios


def scenario_basic(g, size=1.15):
    """~2k revisions, v2: four fulls (none, zlib, lzw, gzip+final), deltas in every compression,
    leases granted/attached/revoked/expired, a 1 MiB value, auth, a compaction before the last
    full, writes racing with full snapshots (db newer than the name)."""
    n = lambda x: max(1, int(x * size))  # noqa: E731
    g.notes = "seeded mixed workload; restore = latest full (.gz.final) + its deltas"
    g.auth_setup()
    g.ops(n(150))
    long_lease = g.grant(3600)
    g.ops(n(10))
    g.full("none", racing=3)
    g.ops(n(160))
    g.delta("gzip")
    short = g.grant(2)
    for _ in range(4):
        k = g.new_key()
        g.put(k, g.value(k, False), lease=short)
    g.ops(n(150))
    g.delta("none")
    g.wait_expired(short)
    g.ops(n(100))
    g.delta("zlib")
    g.ops(n(60))  # dropped by the next full: the gap before it
    g.full("zlib")
    big = b"/registry/configmaps-big/kube-system/huge-1mib"
    g.pinned.add(big)
    g.put(big, g.compressible(1 << 20))
    revoked = g.grant(600)
    for _ in range(3):
        k = g.new_key()
        g.put(k, b"", lease=revoked)
    g.ops(n(160))
    g.delta("lzw")
    g.revoke(revoked)
    g.ops(n(150))
    g.delta("gzip")
    g.delete(big)
    g.ops(n(40))
    g.compact(g.etcd.revision() - n(120))
    g.ops(n(30))
    g.full("lzw", racing=2)
    g.ops(n(150))
    g.delta("none")
    g.ops(n(120))
    g.delta("zlib")
    g.ops(n(20))
    g.auth = g.etcd.auth_state()
    latest = g.full("gzip", final=True, racing=4)
    g.pinned.add(b"/registry/configmaps-big/default/big-512k")
    g.put(b"/registry/configmaps-big/default/big-512k", g.compressible(512 << 10))
    g.ops(n(140))
    d1 = g.delta("lzw")
    later = g.grant(2)
    for _ in range(3):
        k = g.new_key()
        g.put(k, g.value(k, False), lease=later)
    g.ops(n(120))
    d2 = g.delta("gzip")
    g.wait_expired(later)
    g.ops(n(100))
    d3 = g.delta("none")
    g.ops(n(60))
    d4 = g.delta("zlib")
    g.finish(d4["last_revision"], extra_dumps=[d1["last_revision"], d3["last_revision"]])


def scenario_v1(g):
    """v1 layout (Backup-<ts>/ directories, as written by etcd-backup-restore <= v0.12), event
    times in a +02:00 zone; three fulls (gzip, zlib, lzw), deltas in every compression."""
    g.notes = "v1 layout; event times carry a +02:00 zone; restore = latest full + its deltas"
    g.auth_setup()
    g.ops(80)
    g.full("gzip")
    g.ops(90)
    g.delta("lzw")
    lease = g.grant(3600)
    for _ in range(3):
        k = g.new_key()
        g.put(k, g.value(k, False), lease=lease)
    g.ops(90)
    g.delta("none")
    g.ops(30)
    g.compact(g.etcd.revision() - 60)
    g.full("zlib", racing=2)
    g.ops(100)
    g.delta("none")
    g.ops(100)
    g.delta("gzip")
    g.ops(20)
    g.auth = g.etcd.auth_state()
    latest = g.full("lzw", racing=1)
    g.ops(80)
    d1 = g.delta("gzip")
    g.ops(80)
    d2 = g.delta("lzw")
    g.ops(60)
    d3 = g.delta("zlib")
    g.finish(d3["last_revision"], extra_dumps=[d2["last_revision"]])


def scenario_overlap_1043(g):
    """Two deltas with the same start revision (leader hand-off, issue #1043): the shorter one
    ends at E1, the longer one (created later) at E2 > E1; the next delta starts at E2+1."""
    g.notes = "Incr-S-E1 and Incr-S-E2 share start S (E2 > E1); the correct chain uses Incr-S-E2"
    g.auth = g.etcd.auth_state()
    g.ops(40, big_ok=False)
    g.full("gzip")
    g.ops(30, big_ok=False)
    e1 = g.etcd.revision()
    g.ops(13, big_ok=False)
    short = g.delta("gzip", upto=e1, keep_pending=True)
    g.advance(2)
    long_ = g.delta("gzip")
    g.ops(25, big_ok=False)
    d3 = g.delta("gzip")
    g.finish(d3["last_revision"], extra_dumps=[short["last_revision"], long_["last_revision"]])


def scenario_base_newer_1044(g):
    """The full snapshot's db is newer than its name and than the whole first delta (#1044): the
    first delta ends inside the db's revisions; the second delta straddles the db revision."""
    g.notes = "db_revision of the base > last_revision of the first delta; events <= db_revision must be skipped"
    g.auth = g.etcd.auth_state()
    g.ops(40, big_ok=False)
    f = g.full("gzip", racing=12)
    db = f["db_revision"]
    assert db >= f["last_revision"] + 12
    # Cut the first delta (memory-limit flush) a few revisions into the racing writes.
    d1 = g.delta("gzip", upto=f["last_revision"] + 5)
    g.ops(20, big_ok=False)
    d2 = g.delta("gzip")
    g.ops(15, big_ok=False)
    d3 = g.delta("gzip")
    assert d1["last_revision"] < db < d2["last_revision"]
    g.finish(d3["last_revision"], extra_dumps=[d2["last_revision"]])


def scenario_covered_844(g):
    """The first delta is fully covered by the base (#844): it ends exactly at the db revision."""
    g.notes = "first delta ends exactly at the base's db_revision (fully covered, must be skipped)"
    g.auth = g.etcd.auth_state()
    g.ops(40, big_ok=False)
    f = g.full("zlib", racing=4)
    d1 = g.delta("zlib", upto=f["db_revision"])
    assert d1["last_revision"] == f["db_revision"]
    g.ops(20, big_ok=False)
    d2 = g.delta("zlib")
    g.ops(20, big_ok=False)
    d3 = g.delta("zlib")
    g.finish(d3["last_revision"], extra_dumps=[d2["last_revision"]])


def scenario_lease_expired_1045(g):
    """The base holds a short lease with keys attached; it expires in the source only after the
    backup's last delta, so the backup's final state still has the keys (#1045/#1046)."""
    g.notes = "leases.expired[0] is in the base with keys attached at final_revision; it expired after the last delta (ended_revision > final_revision)"
    g.auth = g.etcd.auth_state()
    g.ops(30, big_ok=False)
    lid = g.grant(5)
    for i in range(4):
        g.put(f"/registry/leases/kube-system/holder-{i}".encode(), f"holder-{i}".encode(), lease=lid)
    g.ops(10, big_ok=False)
    g.full("gzip")
    g.ops(15, big_ok=False)
    d1 = g.delta("gzip")
    g.ops(10, big_ok=False)
    d2 = g.delta("gzip")
    # Fast enough that the lease is still alive at d2's end.
    ttl = int(g.etcd.call("lease/timetolive", {"ID": str(lid)}).get("TTL", -1))
    assert ttl > 0, "lease expired too early; the machine is too slow for this scenario"
    g.wait_expired(lid)
    assert g.leases[lid]["ended_revision"] > d2["last_revision"]
    g.finish(d2["last_revision"], extra_dumps=[d1["last_revision"]])


def scenario_sample(g):
    """A tiny v2 gzip backup for the README quick start."""
    g.notes = "README sample: one full + two deltas, gzip"
    g.auth = g.etcd.auth_state()
    for i in range(12):
        g.put(f"/registry/configmaps/default/sample-{i:02d}".encode(), f'{{"data":"value {i}"}}'.encode())
    g.full("gzip")
    for i in range(8):
        g.put(f"/registry/configmaps/default/sample-{i:02d}".encode(), f'{{"data":"updated {i}"}}'.encode())
    g.delta("gzip")
    g.delete(b"/registry/configmaps/default/sample-00")
    g.txn([("put", b"/registry/pods/default/web-0", b'{"phase":"Running"}'), ("del", b"/registry/configmaps/default/sample-01")])
    d = g.delta("gzip")
    g.finish(d["last_revision"])


SCENARIO_FUNCS = {
    "basic": (scenario_basic, "v2", 0),
    "v1": (scenario_v1, "v1", 120),
    "overlap-1043": (scenario_overlap_1043, "v2", 0),
    "base-newer-1044": (scenario_base_newer_1044, "v2", 0),
    "covered-844": (scenario_covered_844, "v2", 0),
    "lease-expired-1045": (scenario_lease_expired_1045, "v2", 0),
    "sample": (scenario_sample, "v2", 0),
}


def generate(version, scenario, out, seed):
    func, layout, tz = SCENARIO_FUNCS[scenario]
    t0 = time.monotonic()
    with Gen(version, scenario, out, seed, layout=layout, tz_offset_min=tz) as g:
        g.auth = {"users": [], "roles": []}
        func(g)
    log(f"{version}/{scenario}: done in {time.monotonic() - t0:.1f}s")


# ---------------------------------------------------------------------------------------------
# Benchmark inputs (not committed): a >= 1 GiB db and >= 100k revisions of deltas.


def bench(version, out, seed, revisions, db_bytes, delta_limit):
    t0 = time.monotonic()
    g = Gen(version, "bench", out, seed)
    g.quota = max(8 << 30, db_bytes * 4)
    with g:
        g.auth = {"users": [], "roles": []}
        g.notes = f"benchmark input: >= {db_bytes} bytes of values in the base, {revisions} revisions of deltas"
        # Bulk values: 1 MiB each, moderately compressible (a 4 KiB random unit repeated).
        loaded, i = 0, 0
        while loaded < db_bytes:
            unit = g.rng.randbytes(4096)
            v = (unit * 256)[: 1 << 20]
            g.put(f"/bench/blob/{i:06d}".encode(), v)
            g.live.pop(f"/bench/blob/{i:06d}".encode(), None)  # never touched by the workload
            loaded += len(v)
            i += 1
            if i % 100 == 0:
                log(f"bench: loaded {loaded >> 20} MiB")
        base = g.full("gzip")
        start_rev = g.etcd.revision()
        target = start_rev + revisions
        last_cut = start_rev
        while True:
            rev = g.random_op(big_ok=False)
            # The snapshotter flushes a delta once its buffer reaches the memory limit.
            if g.watcher.pending_bytes >= delta_limit:
                g.delta("gzip")
                last_cut = rev
            if rev >= target:
                break
            if (rev - start_rev) % 10000 == 0:
                log(f"bench: revision {rev - start_rev}/{revisions}")
        if last_cut != g.etcd.revision():
            g.delta("gzip")
        final = g.objects[-1]["last_revision"]
        g.finish(final)
    log(f"bench: done in {time.monotonic() - t0:.1f}s -> {out}")


# ---------------------------------------------------------------------------------------------


def main():
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all", help="regenerate every committed fixture under testdata/")
    a.add_argument("--seed", type=int, default=1)
    o = sub.add_parser("one", help="one version/scenario")
    o.add_argument("--version", choices=VERSIONS, required=True)
    o.add_argument("--scenario", choices=sorted(SCENARIO_FUNCS), required=True)
    o.add_argument("--seed", type=int, default=1)
    o.add_argument("--out")
    b = sub.add_parser("bench", help="big benchmark inputs into bench-data/ (git-ignored)")
    b.add_argument("--version", choices=VERSIONS, default="3.5.1")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--revisions", type=int, default=100_000)
    b.add_argument("--db-bytes", default="1GiB")
    b.add_argument("--delta-limit", default="10MiB", help="delta memory limit (etcdbrctl default 10 MiB)")
    b.add_argument("--out")
    args = ap.parse_args()
    if not os.path.exists(ORACLE_BIN):
        raise SystemExit(f"{ORACLE_BIN} missing: run scripts/install-test-deps")
    try:
        if args.cmd == "all":
            t0 = time.monotonic()
            for v in VERSIONS:
                for s in SCENARIOS:
                    generate(v, s, os.path.join(ROOT, "testdata", "backups", f"etcd-{v}", s), args.seed)
            generate("3.5.1", "sample", os.path.join(ROOT, "testdata", "sample"), args.seed)
            log(f"all fixtures regenerated in {time.monotonic() - t0:.1f}s")
        elif args.cmd == "one":
            out = args.out or (
                os.path.join(ROOT, "testdata", "sample")
                if args.scenario == "sample"
                else os.path.join(ROOT, "testdata", "backups", f"etcd-{args.version}", args.scenario)
            )
            generate(args.version, args.scenario, out, args.seed)
        else:
            out = args.out or os.path.join(ROOT, "bench-data", f"etcd-{args.version}", "bench")
            bench(args.version, out, args.seed, args.revisions, parse_size(args.db_bytes), parse_size(args.delta_limit))
    finally:
        stop_all()


if __name__ == "__main__":
    main()
