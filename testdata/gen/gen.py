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
  python3 testdata/gen/gen.py bench [--db-bytes 1GiB] [--revisions 100000] [--delta-limit 10MiB]
      [--mix k8s|blobs] [--out DIR]            # benchmark input (docs/benchmarks.md)

Only the Python standard library is used. Compression goes through the Go oracle
(`.deps/bin/bboltoracle compress`) so compressed bytes are Go's own.
"""

import argparse
import base64
import datetime
import hashlib
import http.client
import json
import math
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
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPS = os.environ.get("ETCD_RESTORE_DEPS") or os.path.join(ROOT, ".deps")
ORACLE_BIN = os.path.join(DEPS, "bin", "bboltoracle")
VERSIONS = ["3.5.1", "3.4.23"]
SCENARIOS = ["basic", "v1", "overlap-1043", "base-newer-1044", "covered-844", "lease-expired-1045", "leases-after-base"]
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


def go_compress_file(kind, src, dst):
    """go_compress from file to file, streamed (bench bases are GiBs)."""
    if kind == "none":
        shutil.copyfile(src, dst)
        return
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        r = subprocess.run([ORACLE_BIN, "compress", kind], stdin=fin, stdout=fout, stderr=subprocess.PIPE, timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"bboltoracle compress {kind}: {r.stderr.decode(errors='replace')}")


def file_sha256(path, skip_tail=0):
    """SHA-256 of a file without its last `skip_tail` bytes, and that tail."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    left = size - skip_tail
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(left, 8 << 20))
            if not chunk:
                raise RuntimeError(f"{path}: short read")
            h.update(chunk)
            left -= len(chunk)
        tail = f.read(skip_tail)
    return h, tail, size


# ---------------------------------------------------------------------------------------------
# etcd


def kv_record(key, create_revision, mod_revision, version, value, lease):
    """One key of an oracle dump (docs/testing.md)."""
    o = {"key": b64(key), "create_revision": create_revision, "mod_revision": mod_revision, "version": version}
    if len(value) > INLINE_VALUE_MAX:
        o["value_len"] = len(value)
        o["value_sha256"] = hashlib.sha256(value).hexdigest()
    else:
        o["value"] = b64(value)
    o["lease"] = lease
    return o


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
        # Room for the MiB-sized values and the big benchmark db (the bench raises both).
        self.max_request_bytes = 3145728
        self.extra_args = []

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
            f"--max-request-bytes={self.max_request_bytes}",
        ] + list(self.extra_args)
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
        return self.post_raw(path, json.dumps(body).encode())

    def post_raw(self, path, data):
        """POST an already encoded JSON body to the v3 gateway; the parsed response."""
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=300)
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
        """Every key at `rev` as oracle dump records (kv_record: values > INLINE_VALUE_MAX by
        length + sha256 only, so a GiB-sized db is never held), paginated."""
        out, start = [], b"\0"
        while True:
            r = self.call("kv/range", {"key": b64(start), "range_end": b64(b"\0"), "revision": rev, "limit": 64})
            kvs = r.get("kvs") or []
            for kv in kvs:
                out.append(
                    kv_record(
                        unb64(kv.get("key")),
                        int(kv.get("create_revision", 0)),
                        int(kv.get("mod_revision", 0)),
                        int(kv.get("version", 0)),
                        unb64(kv.get("value")),
                        int(kv.get("lease", 0)),
                    )
                )
            if not r.get("more") or not kvs:
                return out
            start = unb64(kvs[-1].get("key")) + b"\0"

    def hashkv(self, rev):
        j = json.loads(self.ctl("endpoint", "hashkv", f"--rev={rev}", "--write-out=json"))
        h = j[0]["HashKV"]
        return {"revision": rev, "hash": int(h.get("hash", 0)), "compact_revision": int(h.get("compact_revision", 0))}

    def snapshot_save(self, path):
        self.ctl("snapshot", "save", path, timeout=7200)

    def snapshot_db_revision(self, path):
        if self.etcdutl:
            out = self.ctl("snapshot", "status", path, "--write-out=json", tool=self.etcdutl, timeout=7200)
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
        # Oracle dumps: "all" (every full's db revision, the final revision and the extras),
        # "final" (the final revision and the extras), "none" (hashkv records only).
        self.dump_mode = "all"
        self.extra = {}  # more top-level oracle fields (bench: what was generated)
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

    def _write_object(self, kind, start, last, compression, final, body, snapdir, body_path=None):
        """Writes one object: `body` (bytes, trailer included) or the file `body_path`."""
        created = self.now_ns // 10**9
        name = f"{kind}-{start:08d}-{last:08d}-{created}{SUFFIX[compression]}{'.final' if final else ''}"
        rel = f"v2/{name}" if self.layout == "v2" else f"v1/{snapdir}/{name}"
        path = os.path.join(self.store, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if body_path is None:
            data = go_compress(compression, body)
            with open(path, "wb") as f:
                f.write(data)
            size, body_sha256, body_size = len(data), hashlib.sha256(body[:-32]).hexdigest(), len(body) - 32
        else:
            h, _tail, total = file_sha256(body_path, 32)
            go_compress_file(compression, body_path, path)
            size, body_sha256, body_size = os.path.getsize(path), h.hexdigest(), total - 32
        rec = {
            "path": rel,
            "kind": kind,
            "start_revision": start,
            "last_revision": last,
            "created_on": created,
            "compression": compression,
            "final": final,
            "size": size,
            "body_size": body_size,
            "body_sha256": body_sha256,
        }
        self.objects.append(rec)
        log(f"{self.version}/{self.scenario}: {rel} ({size} bytes, body {body_size})")
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
        self.etcd.snapshot_save(tmp)
        db_rev = self.etcd.snapshot_db_revision(tmp)
        h, tail, size = file_sha256(tmp, 32)
        if size % 512 != 32 or h.digest() != tail:
            raise RuntimeError("etcd snapshot stream without a valid sha256 trailer")
        snapdir = f"Backup-{self.now_ns // 10**9}"
        rec = self._write_object("Full", 0, name_rev, compression, final, None, snapdir, body_path=tmp)
        os.remove(tmp)
        rec["db_revision"] = db_rev
        self.prev = {"last": name_rev, "dir": snapdir}
        # Events collected since the last delta are dropped; the watch restarts after the name.
        if self.watcher:
            self.watcher.stop()
        self.watcher = Watcher(self.etcd, name_rev + 1)
        if self.dump_mode == "all":
            self.checkpoint(db_rev)
        else:
            self.hashkv_at(db_rev)
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
        self.hashkv_at(rev)

    def hashkv_at(self, rev):
        h = self.etcd.hashkv(rev)
        if h not in self.hashkvs:
            self.hashkvs.append(h)

    def finish(self, final_revision, extra_dumps=()):
        """Oracle at the end: dumps/hashkv at the final revision and the given later revisions."""
        if self.watcher:
            self.watcher.stop()
            self.watcher = None
        for rev in sorted(set(extra_dumps) | {final_revision}):
            if self.dump_mode == "none":
                self.hashkv_at(rev)
            else:
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
            "dumps": [{"revision": r, "kvs": self.dumps[r]} for r in sorted(self.dumps)],
            "objects": self.objects,
            "leases": {
                st: [lease_json(r) for r in sorted(self.leases.values(), key=lambda r: r["id"]) if r["state"] == st]
                for st in ("alive", "expired", "revoked")
            },
            "auth": self.auth,
            **self.extra,
            "notes": self.notes,
        }
        self.oracle = oracle
        self.write_oracle()

    def write_oracle(self):
        with open(os.path.join(self.out, "oracle.json"), "w") as f:
            f.write(oracle_text(self.oracle))


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


def scenario_leases_after_base(g):
    """Leases granted after the full snapshot (the deltas carry their IDs but no TTLs): one
    still alive with keys at the end, one revoked within the deltas (its keys' DELETEs), one
    whose only key moved to another lease. The base holds a 600 s lease of its own."""
    g.notes = (
        "leases granted after the base: alive ones must be granted again on restore; "
        "the revoked one and the one left without keys must not come back"
    )
    g.auth = g.etcd.auth_state()
    base_lease = g.grant(600)
    g.put(b"/registry/leases/kube-system/base-holder", b'{"holder":"base"}', lease=base_lease)
    g.ops(20, big_ok=False)
    g.full("gzip")
    # A write first: a lease's granted_revision then tells it apart from the base's leases.
    g.put(b"/registry/events/default/first", b'{"reason":"Scheduled"}')
    alive = g.grant(3600)
    for i in range(5):
        g.put(f"/registry/events/default/ev-{i}".encode(), f'{{"reason":"Started","n":{i}}}'.encode(), lease=alive)
    revoked = g.grant(900)
    for i in range(3):
        g.put(f"/registry/events/default/gone-{i}".encode(), f'{{"reason":"Killing","n":{i}}}'.encode(), lease=revoked)
    moved = g.grant(1200)
    g.put(b"/registry/events/ns-a/moved", b'{"reason":"Pulled"}', lease=moved)
    d1 = g.delta("gzip")
    g.revoke(revoked)
    g.put(b"/registry/events/ns-a/moved", b'{"reason":"Pulled","count":2}', lease=alive)
    g.put(b"/registry/events/ns-a/plain", b'{"reason":"Created"}')
    g.ops(10, big_ok=False)
    d2 = g.delta("gzip")
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
    "leases-after-base": (scenario_leases_after_base, "v2", 0),
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
# Benchmark inputs (not committed): a big base db and >= 100k revisions of deltas.
#
# Two mixes. "k8s" (the default): what a Kubernetes apiserver keeps in etcd — many small
# leases and events, pods/deployments/services of 2–20 KB, configmaps (compressible text) and
# secrets (random, base64) of 1–100 KB, ~0.5 % of keys 0.5–1 MiB; values are JSON with the
# real objects' structure and random parts (names, uids, hashes, IPs, env values), so they
# compress about as etcd's contents do. The workload after the base is the apiserver's: lease
# renewals and pod status updates dominate, events are created with a lease (TTL 2 h) and
# deleted, some objects are created, updated and deleted. "blobs": the older fill of 1 MiB
# values (a repeated 4 KiB random unit) followed by the fixtures' random workload.


class Raw:
    """Pre-encoded JSON text inside a document for KubeValues.dumps."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class KubeValues:
    """Seeded Kubernetes-like object values. Static parts of an object (its spec) come from an
    rng seeded with its key, so successive versions of one object differ where the real ones
    do (status, resourceVersion, timestamps)."""

    SYLL = ["ka", "lo", "mi", "ne", "po", "ra", "si", "tu", "ve", "xo", "ba", "de", "fi", "go", "hu",
            "ja", "ki", "lu", "ma", "no", "pe", "qui", "ro", "sa", "te", "vi", "wo", "ya", "zu", "an"]
    REASONS = [("Normal", "Scheduled"), ("Normal", "Pulling"), ("Normal", "Pulled"), ("Normal", "Created"),
               ("Normal", "Started"), ("Normal", "Killing"), ("Warning", "BackOff"), ("Warning", "Unhealthy"),
               ("Warning", "FailedMount"), ("Normal", "SuccessfulCreate"), ("Normal", "ScalingReplicaSet")]

    def __init__(self, rng, clock):
        self.rng = rng
        self.clock = clock  # -> synthetic ns
        r = random.Random(rng.random())
        self.words = sorted({"".join(r.choice(self.SYLL) for _ in range(r.randint(2, 4))) for _ in range(4000)})
        self.images = [
            f"registry.example.com/{r.choice(self.words)}/{r.choice(self.words)}:v{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}"
            for _ in range(400)
        ]
        # Config text is drawn from a small pool of lines (real config files repeat themselves:
        # ~4x with gzip); env entries and annotations from pools of pre-encoded JSON fragments.
        self.lines = [self._line(r) for _ in range(2500)]
        self.env_frags = [self._env_frag(r) for _ in range(20000)]
        self.ann_frags = [self._ann_frag(r) for _ in range(10000)]
        self.nodes = [f"node-{r.choice(self.words)}-{i:04d}" for i in range(200)]

    # --- random parts ---

    def word(self, r):
        return r.choice(self.words)

    def hexs(self, r, n):
        return r.randbytes((n + 1) // 2).hex()[:n]

    def uid(self, r):
        h = self.hexs(r, 32)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def ts(self, r=None, back_s=0):
        ns = self.clock() - (r.randint(0, back_s) * 10**9 if r and back_s else 0)
        return datetime.datetime.fromtimestamp(ns // 10**9, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def ip(self, r):
        return f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"

    def _line(self, r):
        w = self.word
        k = r.random()
        ind = "  " * r.randint(0, 3)
        if k < 0.12:
            return f"{ind}# {' '.join(w(r) for _ in range(r.randint(3, 10)))}"
        if k < 0.25:
            return f"{ind}- {w(r)}.{w(r)}.svc.cluster.local:{r.choice((80, 443, 8080, 9090, 6379))}"
        if k < 0.40:
            return f"{ind}{w(r)}_{w(r)}: {r.randint(0, 100000)}"
        if k < 0.50:
            return f"{ind}{w(r)}: {r.choice(('true', 'false', 'null'))}"
        if k < 0.60:
            return f'{ind}{w(r)}: "https://{w(r)}.example.com/{w(r)}/{w(r)}?id={r.randint(0, 99999)}"'
        if k < 0.70:
            return f"{ind}{w(r)}Ref: {self.hexs(r, r.choice((8, 16, 40)))}"
        return f"{ind}{w(r)}{w(r).capitalize()}: {' '.join(w(r) for _ in range(r.randint(1, 6)))}"

    def text(self, r, n):
        """~n bytes of config-file text: lines drawn from a pool (compresses ~3-4x)."""
        out, size = [], 0
        while size < n:
            batch = r.choices(self.lines, k=max(1, (n - size) // 45))
            out += batch
            size += sum(len(x) + 1 for x in batch)
        return "\n".join(out)

    def env_value(self, r):
        k = r.random()
        if k < 0.15:
            return self.hexs(r, r.choice((16, 32, 40, 64)))
        if k < 0.45:
            return f"http://{self.word(r)}.{self.word(r)}.svc.cluster.local:{r.choice((80, 8080, 9090))}/{self.word(r)}"
        if k < 0.7:
            return " ".join(self.word(r) for _ in range(r.randint(1, 5)))
        if k < 0.95:
            return str(r.randint(0, 10**r.randint(1, 9)))
        return base64.b64encode(r.randbytes(r.randint(12, 60))).decode()

    def _env_frag(self, r):
        name = "_".join(self.word(r).upper() for _ in range(r.randint(1, 3)))
        return json.dumps({"name": name, "value": self.env_value(r)}, separators=(",", ":"))

    def _ann_frag(self, r):
        k = f"{self.word(r)}.example.com/{self.word(r)}-{self.word(r)}"
        return json.dumps(k) + ":" + json.dumps(self.env_value(r))

    @staticmethod
    def _pick(r, pool, n):
        out, size = [], 0
        while size < n:
            batch = r.choices(pool, k=max(1, (n - size) // 60))
            out += batch
            size += sum(len(x) + 1 for x in batch)
        return out

    def env(self, r, n):
        """An env list of about n bytes of JSON (raw JSON text, see dumps)."""
        return Raw("[" + ",".join(self._pick(r, self.env_frags, n)) + "]")

    def annotations(self, r, n):
        return Raw("{" + ",".join(self._pick(r, self.ann_frags, n)) + "}")

    def meta(self, r, kind_key, ns, name, labels=None):
        m = {
            "name": name,
            "namespace": ns,
            "uid": self.uid(r),
            "resourceVersion": str(self.rng.randint(1, 10**8)),
            "creationTimestamp": self.ts(r, 86400 * 30),
            "labels": labels or {"app": name.split("-")[0], "tier": r.choice(("web", "db", "cache", "batch"))},
        }
        return m

    def managed(self, r, manager, op="Update"):
        return [{"manager": manager, "operation": op, "apiVersion": "v1", "time": self.ts(r, 86400),
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]

    @staticmethod
    def dumps(doc):
        """Compact JSON; Raw values (pre-encoded JSON text) are spliced in."""
        raws = []

        def default(o):
            if isinstance(o, Raw):
                raws.append(o.text)
                return f"\0raw{len(raws) - 1}\0"
            raise TypeError(type(o))

        text = json.dumps(doc, separators=(",", ":"), default=default)
        for i, raw in enumerate(raws):
            text = text.replace(f'"\\u0000raw{i}\\u0000"', raw, 1)
        return text.encode()

    # --- objects (each returns bytes of about `size`) ---

    def lease(self, key, ns, name, size):
        r = self.rng
        doc = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
               "metadata": {"name": name, "namespace": ns, "uid": self.uid(random.Random(key)),
                            "resourceVersion": str(r.randint(1, 10**8)), "creationTimestamp": self.ts(random.Random(key), 86400)},
               "spec": {"holderIdentity": name if ns == "kube-node-lease" else f"{name}-{self.hexs(r, 10)}",
                        "leaseDurationSeconds": 40, "renewTime": self.ts() [:-1] + f".{r.randint(0, 999999):06d}Z"}}
        if size > 400:
            doc["metadata"]["managedFields"] = self.managed(random.Random(key), "kubelet")
        if size > 600:
            doc["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": self.uid(random.Random(key))}]
        return self.dumps(doc)

    def event(self, ns, name, size):
        r = self.rng
        typ, reason = r.choice(self.REASONS)
        pod = name.rsplit(".", 1)[0]
        msg = f"{reason} {pod}: " + " ".join(self.word(r) for _ in range(r.randint(3, 12)))
        if size > 900:
            msg += "\n" + self.text(r, size - 900)
        doc = {"kind": "Event", "apiVersion": "v1",
               "metadata": {"name": name, "namespace": ns, "uid": self.uid(r), "resourceVersion": str(r.randint(1, 10**8)),
                            "creationTimestamp": self.ts()},
               "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod, "uid": self.uid(r), "apiVersion": "v1",
                                  "resourceVersion": str(r.randint(1, 10**8)), "fieldPath": f"spec.containers{{{self.word(r)}}}"},
               "reason": reason, "message": msg, "source": {"component": "kubelet", "host": r.choice(self.nodes)},
               "firstTimestamp": self.ts(r, 3600), "lastTimestamp": self.ts(), "count": r.randint(1, 50), "type": typ,
               "eventTime": None, "reportingComponent": "", "reportingInstance": ""}
        return self.dumps(doc)

    def containers(self, s, n_bytes):
        n = s.randint(1, 3)
        return [{"name": self.word(s), "image": s.choice(self.images),
                 "args": [f"--{self.word(s)}={self.word(s)}" for _ in range(s.randint(0, 6))],
                 "ports": [{"containerPort": s.choice((80, 8080, 9090, 443)), "protocol": "TCP"}],
                 "env": self.env(s, n_bytes // n),
                 "resources": {"requests": {"cpu": f"{s.randint(10, 2000)}m", "memory": f"{s.randint(16, 4096)}Mi"}},
                 "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"} for _ in range(n)]

    def pod(self, key, ns, name, size, phase="Running"):
        r, s = self.rng, random.Random(key)
        meta = self.meta(s, key, ns, name)
        meta["resourceVersion"] = str(r.randint(1, 10**8))
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0],
                                    "uid": self.uid(s), "controller": True, "blockOwnerDeletion": True}]
        meta["managedFields"] = self.managed(s, "kube-controller-manager") + self.managed(r, "kubelet")
        node = s.choice(self.nodes)
        doc = {"kind": "Pod", "apiVersion": "v1", "metadata": meta,
               "spec": {"containers": self.containers(s, max(0, size - 1700)), "restartPolicy": "Always", "nodeName": node,
                        "serviceAccountName": "default", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"},
               "status": {"phase": phase, "hostIP": self.ip(s), "podIP": self.ip(r), "startTime": self.ts(r, 86400),
                          "conditions": [{"type": t, "status": r.choice(("True", "True", "False")), "lastTransitionTime": self.ts(r, 3600)}
                                         for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                          "containerStatuses": [{"name": self.word(s), "ready": True, "restartCount": r.randint(0, 5),
                                                 "image": s.choice(self.images), "imageID": "sha256:" + self.hexs(s, 64),
                                                 "containerID": "containerd://" + self.hexs(r, 64),
                                                 "state": {"running": {"startedAt": self.ts(r, 86400)}}}]}}
        return self.dumps(doc)

    def deployment(self, key, ns, name, size):
        r, s = self.rng, random.Random(key)
        meta = self.meta(s, key, ns, name)
        meta["resourceVersion"] = str(r.randint(1, 10**8))
        meta["annotations"] = {"deployment.kubernetes.io/revision": str(r.randint(1, 40))}
        reps = s.randint(1, 10)
        doc = {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": meta,
               "spec": {"replicas": reps, "selector": {"matchLabels": meta["labels"]},
                        "template": {"metadata": {"labels": meta["labels"]},
                                     "spec": {"containers": self.containers(s, max(0, size - 1200))}},
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}},
               "status": {"observedGeneration": r.randint(1, 100), "replicas": reps, "readyReplicas": r.randint(0, reps),
                          "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": self.ts(r, 3600),
                                          "reason": "MinimumReplicasAvailable"}]}}
        return self.dumps(doc)

    def service(self, key, ns, name, size):
        r, s = self.rng, random.Random(key)
        meta = self.meta(s, key, ns, name)
        meta["resourceVersion"] = str(r.randint(1, 10**8))
        meta["annotations"] = self.annotations(s, max(0, size - 700))
        doc = {"kind": "Service", "apiVersion": "v1", "metadata": meta,
               "spec": {"ports": [{"name": self.word(s), "protocol": "TCP", "port": s.choice((80, 443, 8080)),
                                   "targetPort": s.randint(1024, 65535)} for _ in range(s.randint(1, 4))],
                        "selector": meta["labels"], "clusterIP": self.ip(s), "type": "ClusterIP", "sessionAffinity": "None"},
               "status": {"loadBalancer": {}}}
        return self.dumps(doc)

    def configmap(self, key, ns, name, size):
        r = self.rng
        meta = self.meta(random.Random(key), key, ns, name)
        meta["resourceVersion"] = str(r.randint(1, 10**8))
        files = r.randint(1, 3)
        data = {f"{self.word(r)}.yaml": self.text(r, max(16, (size - 400) // files)) for _ in range(files)}
        return self.dumps({"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta, "data": data})

    def secret(self, key, ns, name, size):
        r = self.rng
        meta = self.meta(random.Random(key), key, ns, name)
        meta["resourceVersion"] = str(r.randint(1, 10**8))
        n = max(16, (size - 450) * 3 // 4)
        a = r.randint(n // 4, n)
        data = {"tls.crt": base64.b64encode(r.randbytes(a)).decode(), "tls.key": base64.b64encode(r.randbytes(n - a)).decode()}
        return self.dumps({"kind": "Secret", "apiVersion": "v1", "metadata": meta, "type": "kubernetes.io/tls", "data": data})

    def big(self, key, ns, name, size):
        """0.5–1 MiB: a CRD-like schema or dashboards configmap (text), or a configmap with a
        binaryData half (random)."""
        r = self.rng
        if r.random() < 0.7:
            return self.configmap(key, ns, name, size)
        meta = self.meta(random.Random(key), key, ns, name)
        half = size // 2
        return self.dumps({"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta,
                           "data": {"dashboard.json": self.text(r, half)},
                           "binaryData": {"bundle.tgz": base64.b64encode(r.randbytes((size - half) * 3 // 4)).decode()}})


def loguniform(r, lo, hi):
    return int(math.exp(r.uniform(math.log(lo), math.log(hi))))


class KubeKeys:
    """Key classes of the k8s mix: count weight in the base, size range, object maker; and a
    bounded pool of updatable keys per class (keys and sizes only, never values)."""

    # class: (weight in the base fill by count, size lo, size hi)
    CLASSES = {
        "events": (0.40, 300, 2048),
        "leases": (0.10, 150, 700),
        "pods": (0.20, 2 << 10, 20 << 10),
        "deployments": (0.04, 2 << 10, 20 << 10),
        "services": (0.04, 2 << 10, 20 << 10),
        "configmaps": (0.10, 1 << 10, 100 << 10),
        "secrets": (0.115, 1 << 10, 100 << 10),
        "big": (0.005, 512 << 10, 1 << 20),
    }
    POOL_CAP = 20000

    def __init__(self, rng, values):
        self.rng = rng
        self.v = values
        w = values.word
        r = random.Random(rng.random())
        self.namespaces = ["default", "kube-system", "monitoring", "ingress", "logging"] + [
            f"shoot--{w(r)}--{w(r)}" for _ in range(55)
        ]
        self.counter = 0
        self.pool = {c: [] for c in self.CLASSES}
        self.seen = {c: 0 for c in self.CLASSES}
        names = list(self.CLASSES)
        self.base_names = names
        self.base_weights = [self.CLASSES[c][0] for c in names]

    def size(self, cls):
        _, lo, hi = self.CLASSES[cls]
        return loguniform(self.rng, lo, hi)

    def new(self, cls):
        """A fresh (key, ns, name) of class cls."""
        r, w = self.rng, self.v.word
        self.counter += 1
        c = self.counter
        ns = r.choice(self.namespaces)
        if cls == "events":
            name = f"{w(r)}-{self.v.hexs(r, 10)}-{c:x}.{self.v.hexs(r, 16)}"
        elif cls == "leases":
            if r.random() < 0.7:
                ns, name = "kube-node-lease", f"node-{w(r)}-{c:06d}"
            else:
                name = f"{w(r)}-controller-{c:x}"
        elif cls == "pods":
            name = f"{w(r)}-{self.v.hexs(r, 10)}-{c:x}"
        elif cls == "big":
            name = f"{w(r)}-dashboards-{c:x}"
        else:
            name = f"{w(r)}-{w(r)}-{c:x}"
        prefix = {"services": "services/specs", "big": "configmaps"}.get(cls, cls)
        return f"/registry/{prefix}/{ns}/{name}".encode(), ns, name

    def value(self, cls, key, ns, name, size):
        v = self.v
        if cls == "events":
            return v.event(ns, name, size)
        if cls == "leases":
            return v.lease(key, ns, name, size)
        maker = {"pods": v.pod, "deployments": v.deployment, "services": v.service, "configmaps": v.configmap,
                 "secrets": v.secret, "big": v.big}[cls]
        return maker(key, ns, name, size)

    def remember(self, cls, key, ns, name, size):
        """Adds to the bounded pool (reservoir sampling once full)."""
        p = self.pool[cls]
        self.seen[cls] += 1
        item = (key, ns, name, size)
        if len(p) < self.POOL_CAP:
            p.append(item)
        else:
            j = self.rng.randrange(self.seen[cls])
            if j < self.POOL_CAP:
                p[j] = item

    def pick(self, cls, remove=False):
        p = self.pool[cls]
        if not p:
            return None
        i = self.rng.randrange(len(p))
        item = p[i]
        if remove:
            p[i] = p[-1]
            p.pop()
        return item


class Senders:
    """Posts pre-encoded request bodies to the gateway from `n` threads, each with its own
    connection and its own FIFO queue, while the caller builds the next ones; keeps the highest
    revision seen. Requests given the same `shard` (e.g. a key's CRC) go through one connection
    in order, so two writes to one key are never reordered."""

    def __init__(self, port, n=2, depth=4):
        import queue

        self.qs = [queue.Queue(maxsize=depth) for _ in range(n)]
        self.port = port
        self.error = None
        self.max_rev = 0
        self.next = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(q,), daemon=True) for q in self.qs]
        for t in self.threads:
            t.start()

    def _run(self, q):
        conn = None
        while True:
            item = q.get()
            if item is None:
                break
            path, data = item
            try:
                if self.error is None:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
                    conn.request("POST", "/v3/" + path, body=data, headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    out = resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"/v3/{path}: HTTP {resp.status}: {out[:500]!r}")
                    rev = int(json.loads(out)["header"]["revision"])
                    with self.lock:
                        self.max_rev = max(self.max_rev, rev)
            except Exception as e:  # noqa: BLE001 - raised by submit/close
                self.error = repr(e)
        if conn:
            conn.close()

    def submit(self, path, data, shard=None):
        if self.error:
            raise RuntimeError(self.error)
        if shard is None:
            shard = self.next
            self.next += 1
        self.qs[shard % len(self.qs)].put((path, data))

    def close(self):
        for q in self.qs:
            q.put(None)
        for t in self.threads:
            t.join()
        if self.error:
            raise RuntimeError(self.error)
        return self.max_rev


def put_op_json(key, value, lease=0):
    lease_s = f',"lease":"{lease}"' if lease else ""
    return f'{{"request_put":{{"key":"{b64(key)}","value":"{b64(value)}"{lease_s}}}}}'


EVENT_LEASE_TTL = 7200  # >= 1 h (the apiserver's event TTL): nothing expires while generating


def bench_k8s(g, db_bytes, revisions, delta_limit, txn_bytes, txn_ops):
    """The k8s mix: base fill through multi-put txns, a full snapshot, then the workload."""
    times = {}
    t0 = time.monotonic()
    vals = KubeValues(g.rng, lambda: g.now_ns)
    keys = KubeKeys(g.rng, vals)
    rng = g.rng
    # Events share a lease per synthetic minute, as the apiserver reuses event leases.
    ev_lease = {"id": 0, "at": 0}

    def event_lease():
        if not ev_lease["id"] or g.now_ns - ev_lease["at"] > 60 * 10**9:
            ev_lease["id"] = g.grant(EVENT_LEASE_TTL)
            ev_lease["at"] = g.now_ns
        return ev_lease["id"]

    # --- base fill: multi-put txns of ~txn_bytes, posted by two threads ---
    senders = Senders(g.etcd.client_port, n=2)
    loaded = nkeys = 0
    per_class = {c: [0, 0] for c in KubeKeys.CLASSES}
    batch, batch_bytes = [], 0
    next_log = 64 << 20

    def flush():
        nonlocal batch, batch_bytes
        if batch:
            senders.submit("kv/txn", ('{"success":[' + ",".join(batch) + "]}").encode())
            batch, batch_bytes = [], 0
            g.tick(50, 500)

    while loaded < db_bytes:
        cls = rng.choices(keys.base_names, keys.base_weights)[0]
        key, ns, name = keys.new(cls)
        size = keys.size(cls)
        value = keys.value(cls, key, ns, name, size)
        lease = event_lease() if cls == "events" else 0
        if batch and (batch_bytes + len(value) > txn_bytes or len(batch) >= txn_ops):
            flush()
        batch.append(put_op_json(key, value, lease))
        batch_bytes += len(value) + len(key)
        keys.remember(cls, key, ns, name, len(value))
        per_class[cls][0] += 1
        per_class[cls][1] += len(value)
        loaded += len(value)
        nkeys += 1
        if loaded >= next_log:
            el = time.monotonic() - t0
            log(f"bench: base {loaded >> 20} MiB, {nkeys} keys, {el:.0f}s ({loaded / el / (1 << 20):.1f} MiB/s)")
            next_log += 64 << 20
    flush()
    senders.close()
    times["fill"] = time.monotonic() - t0
    log(f"bench: base filled: {nkeys} keys, {loaded} value bytes in {times['fill']:.1f}s "
        f"({loaded / times['fill'] / (1 << 20):.1f} MiB/s)")

    t1 = time.monotonic()
    base = g.full("gzip")
    times["full"] = time.monotonic() - t1

    # --- workload: one write per revision (the apiserver never writes several keys at once) ---
    t2 = time.monotonic()
    start_rev = g.etcd.revision()
    target = start_rev + revisions
    rev = start_rev
    ops = {}

    # Writes are pipelined (two connections, a few requests in flight, the writes of one key
    # on one connection in order); every op makes exactly one revision (deletes only hit keys
    # known to exist), so op i gets revision start_rev + i.
    senders = Senders(g.etcd.client_port, n=2, depth=16)

    def put(cls, key, ns, name, size, lease=0, remember=False):
        value = keys.value(cls, key, ns, name, size)
        lease_s = f',"lease":"{lease}"' if lease else ""
        senders.submit("kv/put", f'{{"key":"{b64(key)}","value":"{b64(value)}"{lease_s}}}'.encode(), zlib.crc32(key))
        if remember:
            keys.remember(cls, key, ns, name, len(value))

    def delete(key):
        senders.submit("kv/deleterange", f'{{"key":"{b64(key)}"}}'.encode(), zlib.crc32(key))

    # (weight, op); ops on an empty pool fall through to creating. Lease renewals and pod
    # status updates dominate, as in a real cluster; ~4 KB of delta JSON per revision.
    weights = [
        (50, "lease-renew"), (10, "pod-status"), (18, "event-create"), (4, "event-update"), (4, "event-delete"),
        (2.5, "pod-create"), (2.5, "pod-delete"), (1.5, "deployment-update"), (1, "service-update"),
        (1.5, "configmap-update"), (1, "secret-update"), (0.02, "big-update"), (1.5, "object-create"),
        (1.5, "object-delete"),
    ]
    total_w = sum(w for w, _ in weights)
    table, acc = [], 0.0
    for w, o in weights:
        acc += w / total_w
        table.append((acc, o))
    table[-1] = (1.0, table[-1][1])
    next_log = start_rev + 10000
    while rev < target:
        x = rng.random()
        op = next(o for p, o in table if x < p)
        verb = op.split("-")[1]
        cls = {"lease": "leases", "pod": "pods", "event": "events", "deployment": "deployments",
               "service": "services", "configmap": "configmaps", "secret": "secrets", "big": "big"}.get(op.split("-")[0])
        if cls is None:
            cls = rng.choice(("configmaps", "secrets", "services", "deployments"))
        item = None if verb == "create" else keys.pick(cls, remove=(verb == "delete"))
        if item is None:
            verb = "create"
        lease = event_lease() if cls == "events" and verb != "delete" else 0
        if verb == "create":
            key, ns, name = keys.new(cls)
            put(cls, key, ns, name, keys.size(cls), lease, remember=True)
        elif verb == "delete":
            delete(item[0])
        else:
            key, ns, name, size = item
            put(cls, key, ns, name, size, lease)
        rev += 1
        done = op if verb != "create" or op.endswith("-create") else f"{cls}-create"
        ops[done] = ops.get(done, 0) + 1
        g.note(rev)
        # The snapshotter flushes a delta once its buffer reaches the memory limit.
        if g.watcher.pending_bytes >= delta_limit:
            g.delta("gzip")
        if rev >= next_log:
            el = time.monotonic() - t2
            log(f"bench: revision {rev - start_rev}/{revisions}, {el:.0f}s ({(rev - start_rev) / el:.0f} rev/s)")
            next_log += 10000
    last = senders.close()
    if last != target or g.etcd.revision() != target:
        raise RuntimeError(f"workload ended at revision {last}/{g.etcd.revision()}, expected {target}")
    g.delta("gzip")
    times["workload"] = time.monotonic() - t2
    deltas = [o for o in g.objects if o["kind"] == "Incr"]
    return {
        "mix": "k8s",
        "db_bytes_target": db_bytes,
        "base_keys": nkeys,
        "base_value_bytes": loaded,
        "base_classes": {c: {"keys": n, "value_bytes": b} for c, (n, b) in per_class.items()},
        "base_db_bytes": base["body_size"],
        "base_db_revision": base["db_revision"],
        "revisions": g.objects[-1]["last_revision"] - base["db_revision"],
        "delta_limit": delta_limit,
        "deltas": len(deltas),
        "delta_events": sum(o["events"] for o in deltas),
        "delta_json_bytes": sum(o["body_size"] for o in deltas),
        "delta_json_max": max((o["body_size"] for o in deltas), default=0),
        "workload_ops": dict(sorted(ops.items())),
        "fill_txn_bytes": txn_bytes,
        "fill_txn_ops": txn_ops,
    }, times


def bench_blobs(g, db_bytes, revisions, delta_limit):
    """The older mix: 1 MiB values (a 4 KiB random unit repeated), then the fixtures' random
    workload."""
    times = {}
    t0 = time.monotonic()
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
    times["fill"] = time.monotonic() - t0
    t1 = time.monotonic()
    base = g.full("gzip")
    times["full"] = time.monotonic() - t1
    t2 = time.monotonic()
    start_rev = g.etcd.revision()
    target = start_rev + revisions
    last_cut = start_rev
    while True:
        rev = g.random_op(big_ok=False)
        if g.watcher.pending_bytes >= delta_limit:
            g.delta("gzip")
            last_cut = rev
        if rev >= target:
            break
        if (rev - start_rev) % 10000 == 0:
            log(f"bench: revision {rev - start_rev}/{revisions}")
    if last_cut != g.etcd.revision():
        g.delta("gzip")
    times["workload"] = time.monotonic() - t2
    deltas = [o for o in g.objects if o["kind"] == "Incr"]
    return {
        "mix": "blobs",
        "db_bytes_target": db_bytes,
        "base_keys": i,
        "base_value_bytes": loaded,
        "base_db_bytes": base["body_size"],
        "base_db_revision": base["db_revision"],
        "revisions": g.objects[-1]["last_revision"] - base["db_revision"],
        "delta_limit": delta_limit,
        "deltas": len(deltas),
        "delta_events": sum(o["events"] for o in deltas),
        "delta_json_bytes": sum(o["body_size"] for o in deltas),
        "delta_json_max": max((o["body_size"] for o in deltas), default=0),
    }, times


def bench(version, out, seed, revisions, db_bytes, delta_limit, mix="k8s", workdir=None, dumps="auto",
          txn_bytes=2 << 20, txn_ops=128):
    t0 = time.monotonic()
    if workdir is None:
        # etcd's data dir and the snapshot file: /dev/shm when it has room for ~3x the db.
        shm = "/dev/shm"
        if os.path.isdir(shm) and os.access(shm, os.W_OK):
            st = os.statvfs(shm)
            if st.f_bavail * st.f_frsize > 3 * db_bytes + (2 << 30):
                workdir = None  # Gen's default (/dev/shm)
            else:
                os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
                workdir = tempfile.mkdtemp(prefix="etcd-restore-gen-", dir=os.path.dirname(os.path.abspath(out)))
    elif workdir:
        os.makedirs(workdir, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix="etcd-restore-gen-", dir=workdir)
    g = Gen(version, "bench", out, seed, workdir=workdir)
    g.own_workdir = True
    g.quota = max(8 << 30, db_bytes * 4)
    g.etcd.max_request_bytes = max(8 << 20, txn_bytes * 2 + (2 << 20))
    g.etcd.extra_args = [f"--max-txn-ops={max(128, txn_ops)}"]
    g.dump_mode = dumps if dumps != "auto" else ("final" if db_bytes <= 256 << 20 else "none")
    with g:
        g.auth = {"users": [], "roles": []}
        if mix == "k8s":
            info, times = bench_k8s(g, db_bytes, revisions, delta_limit, txn_bytes, txn_ops)
        else:
            info, times = bench_blobs(g, db_bytes, revisions, delta_limit)
        g.notes = (f"benchmark input ({mix} mix): a base of >= {db_bytes} bytes of values, then {revisions} "
                   f"revisions cut into gzip deltas at {delta_limit} bytes of buffered events")
        t3 = time.monotonic()
        final = g.objects[-1]["last_revision"]
        g.extra = {"bench": info}
        g.finish(final)
        times["finish"] = time.monotonic() - t3
        times["total"] = time.monotonic() - t0
        info["seconds"] = {k: round(v, 1) for k, v in times.items()}
        g.write_oracle()
    log(f"bench: done in {time.monotonic() - t0:.1f}s -> {out}: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))


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
    b.add_argument("--delta-limit", default="10MiB",
                   help="delta memory limit: a delta is cut when its buffered events reach it (etcdbrctl's default 10 MiB)")
    b.add_argument("--mix", choices=["k8s", "blobs"], default="k8s",
                   help="k8s: Kubernetes-like objects of 100 B - 1 MiB (default); blobs: 1 MiB values, the older input")
    b.add_argument("--dumps", choices=["auto", "all", "final", "none"], default="auto",
                   help="oracle key dumps: at every full and the end (all), at the end (final), none (hashkv only); "
                   "auto: final up to --db-bytes 256MiB, else none (reading a GiB back through the gateway takes minutes)")
    b.add_argument("--fill-txn-bytes", default="2MiB", help="k8s base fill: value bytes per multi-put txn")
    b.add_argument("--fill-txn-ops", type=int, default=128, help="k8s base fill: puts per txn at most (etcd's default --max-txn-ops)")
    b.add_argument("--workdir", help="where etcd's data dir goes (default /dev/shm when it has room for ~3x the db)")
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
            bench(args.version, out, args.seed, args.revisions, parse_size(args.db_bytes), parse_size(args.delta_limit),
                  mix=args.mix, workdir=args.workdir, dumps=args.dumps, txn_bytes=parse_size(args.fill_txn_bytes),
                  txn_ops=args.fill_txn_ops)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
