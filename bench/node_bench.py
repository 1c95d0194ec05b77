#!/usr/bin/env python3
"""Measurements of `narun node`, driven by bench/node.sh (run that, not this).

Boots a private systemd (src/private-systemd.sh as PID 1 of a
private PID + mount namespace), a nats-server, and the release `narun node`
against them; deploys copies of /bin/sleep as apps through the KV bucket
`app-configs` and the object store `app-binaries` (nats-py, the only
dependency, installed by node.sh in its venv); measures memory, spec write
-> unit active (against a bare `systemd-run`), crash -> active again, and
the cold start of many apps; prints one table.

Times are CLOCK_MONOTONIC on both sides: time.monotonic() here and systemd's
`*TimestampMonotonic` unit properties (no time namespace is involved), so a
put made here and the instant systemd saw the unit active are compared
directly.

Every process started here is recorded in <base>/pids/ ("pid comm" per
file) so that node.sh's trap can kill it if this process dies first.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time

import nats  # nats-py

NODE = "bench"
PREFIX = "nbench"
TAG = "v1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Fail(Exception):
    pass


def log(msg):
    print(f"[node-bench {time.monotonic() - T_START:5.1f}s] {msg}", file=sys.stderr, flush=True)


T_START = time.monotonic()


def app_name(i):
    return f"{PREFIX}-{i:03d}"


def go_arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "riscv64": "riscv64"}.get(m, m)


def spec_yaml(app, replicas=1, delay=None):
    y = f'name: {app}\ntag: {TAG}\nargs: ["1000000"]\n'
    if delay:
        y += f"restart: {{delay: {delay}}}\n"
    y += f"nodes:\n  - name: {NODE}\n    replicas: {replicas}\n"
    return y.encode()


# ------------------------------------------------------------------ processes


class Registry:
    """pid files for node.sh's trap."""

    def __init__(self, d):
        self.d = d
        os.makedirs(d, exist_ok=True)

    def add(self, name, pid, comm):
        with open(os.path.join(self.d, name), "w") as f:
            f.write(f"{pid} {comm}\n")

    def remove(self, name):
        try:
            os.unlink(os.path.join(self.d, name))
        except FileNotFoundError:
            pass


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def comm(pid):
    return read(f"/proc/{pid}/comm").strip()


def children(pid):
    return [int(x) for x in read(f"/proc/{pid}/task/{pid}/children").split()]


def cpu_seconds(pid):
    """utime + stime of a live process, in seconds (0 if gone)."""
    s = read(f"/proc/{pid}/stat")
    if not s:
        return 0.0
    fields = s[s.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_kib(pid):
    out = {}
    for line in read(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            out[k] = int(v.split()[0])
    return out


def remove_depth_first(d):
    try:
        entries = list(os.scandir(d))
    except OSError:
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            remove_depth_first(e.path)
    try:
        os.rmdir(d)
    except OSError:
        pass


def cleanup_cgroups():
    """Empty cgroups a private systemd left (only where PID 1 is not systemd)."""
    if comm(1) == "systemd":
        return
    roots = ["/sys/fs/cgroup"] + [e.path for e in os.scandir("/sys/fs/cgroup") if e.is_dir()]
    for r in roots:
        for n in ("narun.slice", "system.slice", "init.scope"):
            p = os.path.join(r, n)
            if os.path.isdir(p):
                remove_depth_first(p)


class PrivateSystemd:
    def __init__(self, script, reg, tag):
        self.reg, self.tag = reg, tag
        self.unshare = subprocess.Popen(
            ["setsid", "unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        reg.add(f"unshare-{tag}", self.unshare.pid, "unshare")
        deadline = time.monotonic() + 30
        self.pid = None
        while self.pid is None:
            found = [c for c in children(self.unshare.pid) if comm(c) == "systemd"]
            if found:
                self.pid = found[0]
                break
            if self.unshare.poll() is not None:
                raise Fail(f"unshare exited ({self.unshare.returncode}) before systemd started")
            if time.monotonic() > deadline:
                raise Fail("the private systemd did not start within 30 s")
            time.sleep(0.02)
        reg.add(f"systemd-{tag}", self.pid, "systemd")
        self.ns = ["nsenter", "-t", str(self.pid), "-m", "-p"]
        while not os.path.exists(f"/proc/{self.pid}/root/run/systemd/private"):
            if time.monotonic() > deadline:
                raise Fail("the private systemd never opened its private socket")
            time.sleep(0.02)
        out = subprocess.run(
            self.ns + ["systemctl", "is-system-running", "--wait"], capture_output=True, text=True, timeout=60
        )
        state = out.stdout.strip()
        if state not in ("running", "degraded"):
            raise Fail(f"private systemd state {state!r}: {out.stderr.strip()}")
        self.bus_path = f"/proc/{self.pid}/root/run/dbus/system_bus_socket"
        if not os.path.exists(self.bus_path):
            raise Fail(f"no D-Bus socket at {self.bus_path}")
        self.bus = f"unix:path={self.bus_path}"
        self.pidns = os.readlink(f"/proc/{self.pid}/ns/pid")

    def dbus_pid(self):
        for c in children(self.pid):
            if comm(c) == "dbus-daemon":
                return c
        return None

    def host_pid(self, ns_pid):
        """Host pid of the process that is `ns_pid` inside the namespace."""
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            for line in read(f"/proc/{d}/status").splitlines():
                if line.startswith("NSpid:"):
                    f = line.split()[1:]
                    if len(f) >= 2 and f[-1] == str(ns_pid):
                        try:
                            if os.readlink(f"/proc/{d}/ns/pid") == self.pidns:
                                return int(d)
                        except OSError:
                            pass
                    break
        raise Fail(f"no host pid for namespace pid {ns_pid}")

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.unshare.kill()
        try:
            self.unshare.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        for _ in range(200):
            if not os.path.exists(f"/proc/{self.pid}"):
                break
            time.sleep(0.02)
        self.reg.remove(f"systemd-{self.tag}")
        self.reg.remove(f"unshare-{self.tag}")
        for _ in range(3):
            cleanup_cgroups()
            time.sleep(0.05)


def killpg(p):
    """Kill a subprocess started with start_new_session=True and its children
    (`nsenter -p` forks: its child keeps the pipes open)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nats(base, reg):
    """A JetStream nats-server on a free loopback port, store and log in
    `base`; returns (process, url) once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", os.path.join(base, "js"),
         "-l", os.path.join(base, "nats.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    reg.add("nats", proc.pid, "nats-server")
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                if c.recv(4) == b"INFO":
                    return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Fail("nats-server did not start: " + read(os.path.join(base, "nats.log"))[-500:])
        time.sleep(0.05)


async def run(*cmd, check=True, timeout=60):
    p = await asyncio.create_subprocess_exec(
        *cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(p.communicate(), timeout)
    except asyncio.TimeoutError:
        killpg(p)
        await p.wait()
        raise Fail(f"timed out: {' '.join(cmd)}")
    if check and p.returncode != 0:
        raise Fail(f"{' '.join(cmd)} exited {p.returncode}: {err.decode().strip()}")
    return out.decode()


async def show(sd, units, props):
    """systemctl show -p PROPS UNITS... -> list of dicts (one per unit)."""
    out = await run(*sd.ns, "systemctl", "show", "-p", ",".join(["Id"] + props), *units)
    res, cur = [], {}
    for line in out.splitlines() + [""]:
        if not line.strip():
            if cur:
                res.append(cur)
            cur = {}
            continue
        k, _, v = line.partition("=")
        cur[k] = v
    return res


async def show1(sd, unit, props):
    r = await show(sd, [unit], props)
    return r[0] if r else {}


def mono(props, key):
    """A systemd *TimestampMonotonic (µs) as seconds, None when unset."""
    v = int(props.get(key, "0") or 0)
    return v / 1e6 if v else None


# --------------------------------------------------------------------- agent


class Agent:
    def __init__(self, a, url, sd, data_dir, reg, n):
        self.reg, self.n = reg, n
        self.notify_path = os.path.join(a.base, f"notify-{n}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.notify_path)
        self.sock.setblocking(False)
        self.log_path = os.path.join(a.base, f"agent-{n}.log")
        self.ready = asyncio.get_running_loop().create_future()
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, RUST_LOG="info")
        env.update(kv.split("=", 1) for kv in a.agent_env)
        with open(self.log_path, "w") as logf:
            self.t_spawn = time.monotonic()
            self.p = subprocess.Popen(
                [
                    *([a.agent] if a.agent else [a.narun, "node"]),
                    "--nats-url", url,
                    "--node-id", NODE,
                    "--data-dir", data_dir,
                    "--systemd-bus", sd.bus,
                    "--journalctl", "",
                    "--status-interval", "300ms",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=logf,
            )
        self.pid = self.p.pid
        reg.add(f"agent-{n}", self.pid, "narun")
        # The agent sends STATUS= every status tick: keep its socket drained.
        self.drain = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self):
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(self.sock, 4096)
            except OSError:
                return
            if b"READY=1" in data and not self.ready.done():
                self.ready.set_result(time.monotonic())

    def log_tail(self, n=15):
        return "\n".join(read(self.log_path).splitlines()[-n:])

    async def wait_ready(self, timeout=60):
        try:
            return await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except asyncio.TimeoutError:
            raise Fail(f"the agent sent no READY=1 within {timeout} s:\n{self.log_tail()}")

    def alive(self):
        return self.p.poll() is None

    def check(self):
        if not self.alive():
            raise Fail(f"the agent exited ({self.p.returncode}):\n{self.log_tail()}")

    def stop(self, sig=signal.SIGTERM):
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.reg.remove(f"agent-{self.n}")
        self.drain.cancel()
        self.sock.close()


# -------------------------------------------------------------------- status


class Status:
    """Follows status.*.<node>; resolves waiters when a predicate holds."""

    def __init__(self):
        self.latest = {}
        self.waiters = []
        self.count = 0

    async def cb(self, msg):
        t = time.monotonic()
        try:
            s = json.loads(msg.data)
        except ValueError:
            return
        s["_t"] = t
        self.count += 1
        self.latest[s.get("instance_id", "")] = s
        for w in list(self.waiters):
            pred, fut = w
            if fut.done():
                self.waiters.remove(w)
            elif pred(s, self):
                fut.set_result(s)
                self.waiters.remove(w)

    def expect(self, pred):
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append((pred, fut))
        return fut


def is_(iid, status, extra=lambda s: True):
    return lambda s, _st: s.get("instance_id") == iid and s.get("status") == status and extra(s)


def all_running(ids, since):
    ids = set(ids)

    def pred(_s, st):
        for i in ids:
            x = st.latest.get(i)
            if not x or x.get("status") != "running" or x["_t"] < since:
                return False
        return True

    return pred


def running_count(st, ids, since):
    return sum(
        1 for i in ids if (x := st.latest.get(i)) and x.get("status") == "running" and x["_t"] >= since
    )


async def wait(fut, timeout, what):
    try:
        return await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        raise Fail(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------- statistics


def med(v):
    v = [x for x in v if x == x]  # without NaN (an event not seen)
    return statistics.median(v) if v else float("nan")


def p90(v):
    v = [x for x in v if x == x]
    if len(v) < 2:
        return v[0] if v else float("nan")
    return statistics.quantiles(v, n=10, method="inclusive")[8]


def ms(x):
    return f"{x * 1000:.0f} ms" if x == x else "n/a"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


async def cpu_window(pids, secs):
    """CPU % of each pid over `secs` (of one core)."""
    before = {p: cpu_seconds(p) for p in pids if p}
    await asyncio.sleep(secs)
    return {p: (cpu_seconds(p) - b) / secs * 100 for p, b in before.items()}


async def dbus_calls_per_s(sd, secs):
    """Method calls per second seen on the private bus (busctl monitor)."""
    p = await asyncio.create_subprocess_exec(
        *sd.ns, "busctl", "monitor", "--system",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    calls = 0

    async def count():
        nonlocal calls
        async for line in p.stdout:
            if b"Type=method_call" in line:
                calls += 1

    task = asyncio.create_task(count())
    await asyncio.sleep(0.5)  # monitor attached
    start = calls
    await asyncio.sleep(secs)
    n = calls - start
    killpg(p)
    task.cancel()
    try:
        await asyncio.wait_for(p.wait(), 5)
    except asyncio.TimeoutError:
        pass
    return n / secs


async def latency_series(a, sd, st, kv, target, sleep_bin, label):
    """Interleaved: bare systemd-run, systemd-run with narun's properties,
    narun scale-up 1 -> 2 of `target` (binary cached), then back to 1."""
    lat = {"bare": [], "props": [], "narun": []}
    unit1 = f"narun-app@{target}:1.service"
    iid1 = f"{target}-1"
    sr_props = narun_like_props()
    tprops = ["ActiveState", "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"]
    log(f"spec write -> active with {label}: {a.reps} runs (+1 warm-up) of each")
    for i in range(a.reps + 1):
        for kind in ("bare", "props"):
            unit = f"{PREFIX}-run-{kind}-{label.split()[0]}-{i}.service"
            extra = ["-p", "DynamicUser=yes"] if kind == "bare" else sr_props
            t0 = time.monotonic()
            await run(*sd.ns, "systemd-run", "--quiet", "--unit", unit, *extra, sleep_bin, "1000")
            t_ret = time.monotonic()
            p = await show1(sd, unit, tprops)
            if p.get("ActiveState") != "active":
                raise Fail(f"{unit} is {p.get('ActiveState')} after systemd-run")
            if i > 0:
                lat[kind].append({
                    "active": mono(p, "ActiveEnterTimestampMonotonic") - t0,
                    "fork": mono(p, "InactiveExitTimestampMonotonic") - t0,
                    "exec": mono(p, "ActiveEnterTimestampMonotonic") - mono(p, "InactiveExitTimestampMonotonic"),
                    "returned": t_ret - t0,
                })
            await run(*sd.ns, "systemctl", "stop", unit)
        # narun: scale the target app 1 -> 2 (its binary is cached)
        f_start = st.expect(is_(iid1, "starting"))
        f_run = st.expect(is_(iid1, "running"))
        t0 = time.monotonic()
        await kv.put(target, spec_yaml(target, replicas=2))
        s_run = await wait(f_run, 30, f"{iid1} running")
        s_start = f_start.result() if f_start.done() else None
        f_start.cancel()
        p = await show1(sd, unit1, tprops)
        if i > 0:
            lat["narun"].append({
                "active": mono(p, "ActiveEnterTimestampMonotonic") - t0,
                "fork": mono(p, "InactiveExitTimestampMonotonic") - t0,
                "exec": mono(p, "ActiveEnterTimestampMonotonic") - mono(p, "InactiveExitTimestampMonotonic"),
                "starting": (s_start["_t"] - t0) if s_start else float("nan"),
                "status": s_run["_t"] - t0,
                "status_after_active": s_run["_t"] - mono(p, "ActiveEnterTimestampMonotonic"),
            })
        f_stop = st.expect(is_(iid1, "stopped"))
        await kv.put(target, spec_yaml(target, replicas=1))
        await wait(f_stop, 30, f"{iid1} stopped")
        await asyncio.sleep(a.settle)
    log(f"latency with {label}: narun median " + ms(med([x["active"] for x in lat["narun"]]))
        + ", systemd-run median " + ms(med([x["active"] for x in lat["bare"]])))
    return lat


def peak_overlap(spans):
    """Largest number of (start, end) intervals open at one instant."""
    edges = sorted([(b, 1) for b, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    cur = peak = 0
    for _, d in edges:
        cur += d
        peak = max(peak, cur)
    return peak


def read_ahead_kb(path):
    """read_ahead_kb of the block device holding `path` ("?" if none)."""
    st = os.stat(path)
    d = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for q in (f"{d}/queue/read_ahead_kb", f"{d}/../queue/read_ahead_kb"):
        if os.path.exists(q):
            return read(q).strip()
    return "?"


def smaps(pid):
    """Resident KiB by kind: the executable, shared libraries, anonymous."""
    exe = os.readlink(f"/proc/{pid}/exe")
    out = {"exe": 0, "libs": 0, "anon": 0}
    name = ""
    for line in read(f"/proc/{pid}/smaps").splitlines():
        first = line.split(None, 1)[0]
        if "-" in first and not first.endswith(":"):
            f = line.split()
            name = f[5] if len(f) > 5 else ""
        elif first == "Rss:":
            kib = int(line.split()[1])
            if name == exe:
                out["exe"] += kib
            elif name.startswith("/"):
                out["libs"] += kib
            else:
                out["anon"] += kib
    return out


# ---------------------------------------------------------------------- main


async def main(a):
    reg = Registry(os.path.join(a.base, "pids"))
    res = {"env": {}}
    sd = agent = nats_proc = None
    arch = go_arch()
    sleep_bin = os.path.join(a.base, "sleep")
    with open("/bin/sleep", "rb") as f:
        sleep_bytes = f.read()
    with open(sleep_bin, "wb") as f:
        f.write(sleep_bytes)
    os.chmod(sleep_bin, 0o755)
    res["env"]["load_start"] = read("/proc/loadavg").split()[:3]
    res["env"]["builders_start"] = busy_builders()
    res["env"]["readahead"] = read_ahead_kb(a.agent or a.narun)
    try:
        nats_proc, url = start_nats(a.base, reg)
        nc = await nats.connect(url, max_reconnect_attempts=-1, connect_timeout=5)
        res["env"]["nats"] = nc._server_info.get("version", "?")
        st = Status()
        await nc.subscribe(f"status.*.{NODE}", cb=st.cb)
        await nc.flush()

        log("booting a private systemd")
        sd = PrivateSystemd(a.script, reg, "1")
        res["env"]["systemd"] = (await run(*sd.ns, "systemctl", "--version")).splitlines()[0]

        # ---------------------------------------------------------- 1. idle
        data_main = os.path.join(a.base, "data-main")
        log("starting the agent (0 apps)")
        agent = Agent(a, url, sd, data_main, reg, 1)
        await agent.wait_ready()
        await asyncio.sleep(2)
        agent.check()
        watch = [agent.pid, sd.pid, sd.dbus_pid()]
        cpu = await cpu_window(watch, a.idle_secs)
        res["idle0"] = {"mem": mem_kib(agent.pid), "smaps": smaps(agent.pid),
                        "cpu": [cpu.get(p, 0) for p in watch]}
        res["idle0"]["dbus"] = await dbus_calls_per_s(sd, a.idle_secs)
        log(f"idle: {res['idle0']}")

        js = nc.jetstream()
        kv = await js.key_value("app-configs")
        obs = await js.object_store("app-binaries")

        # Binaries for every app: a copy of /bin/sleep with a distinct tail
        # (distinct digests, as distinct apps have), one object per app.
        uploads = a.apps if a.memory else a.cold_apps
        log(f"uploading {uploads} binaries")
        t = time.monotonic()
        for i in range(uploads):
            app = app_name(i)
            await obs.put(f"{app}-{TAG}-linux-{arch}", sleep_bytes + f"\0{app}".encode())
        res["upload_s"] = time.monotonic() - t

        # ------------------------------------- 2. one app, then 50 apps
        apps = [app_name(i) for i in range(a.apps)]
        crash_slow = apps[1 : 1 + a.crashes]
        crash_fast = apps[1 + a.crashes : 1 + 2 * a.crashes]

        async def deploy(names):
            ids = [f"{x}-0" for x in names]
            t0 = time.monotonic()
            fut = st.expect(all_running(ids, t0))
            for x in names:
                await kv.put(x, spec_yaml(x, delay="100ms" if x in crash_fast else None))
            try:
                await wait(fut, 90, f"{len(names)} apps running")
            except Fail:
                raise Fail(f"only {running_count(st, ids, t0)}/{len(names)} apps running after 90 s:\n"
                           f"{agent.log_tail()}")
            return time.monotonic() - t0

        log(f"deploying {apps[0]}")
        await deploy(apps[:1])
        if not a.memory:
            res["lat1"] = await latency_series(a, sd, st, kv, apps[0], sleep_bin, "1 app")
        log(f"deploying {len(apps) - 1} more apps at once")
        res["deploy_s"] = await deploy(apps[1:])
        await asyncio.sleep(2)
        agent.check()
        cpu = await cpu_window(watch, a.idle_secs)
        res["idle50"] = {"mem": mem_kib(agent.pid), "smaps": smaps(agent.pid),
                         "cpu": [cpu.get(p, 0) for p in watch]}
        res["idle50"]["dbus"] = await dbus_calls_per_s(sd, a.idle_secs)
        log(f"{a.apps} apps: deploy {res['deploy_s']:.2f} s, {res['idle50']}")
        if a.memory:
            res["env"]["load_end"] = read("/proc/loadavg").split()[:3]
            res["env"]["builders_end"] = busy_builders()
            return res

        # ------------------------------ 3. spec write -> active, 50 apps
        res["lat50"] = await latency_series(a, sd, st, kv, apps[0], sleep_bin, f"{a.apps} apps")
        agent.check()

        # ---------------------------------------------------- 4. crash
        res["crash"] = {}
        for group, names in (("slow", crash_slow), ("fast", crash_fast)):
            rows = []
            for x in names:
                unit = f"narun-app@{x}.service"
                p = await show1(sd, unit, ["MainPID", "NRestarts", "RestartUSec"])
                old = int(p["MainPID"])
                host = sd.host_pid(old)
                f_crash = st.expect(lambda s, _st, x=x: s.get("instance_id") == f"{x}-0" and s.get("status") == "crashed")
                f_run = st.expect(lambda s, _st, x=x, old=old: s.get("instance_id") == f"{x}-0"
                                  and s.get("status") == "running" and s.get("pid") not in (None, old))
                t0 = time.monotonic()
                os.kill(host, signal.SIGKILL)
                s_run = await wait(f_run, 30, f"{x} running again")
                q = await show1(sd, unit, ["MainPID", "NRestarts", "ActiveEnterTimestampMonotonic",
                                           "ExecMainStartTimestampMonotonic"])
                if int(q["MainPID"]) == old or int(q["NRestarts"]) < 1:
                    raise Fail(f"{unit} did not restart: {q}")
                rows.append({
                    "restart_usec": p.get("RestartUSec", "?"),
                    "active": mono(q, "ActiveEnterTimestampMonotonic") - t0,
                    "crashed": (f_crash.result()["_t"] - t0) if f_crash.done() else float("nan"),
                    "status": s_run["_t"] - t0,
                    "status_after_active": s_run["_t"] - mono(q, "ActiveEnterTimestampMonotonic"),
                })
                f_crash.cancel()
            res["crash"][group] = rows
        agent.check()
        log("crash: " + ", ".join(f"{g} {ms(med([r['active'] for r in rows]))}" for g, rows in res["crash"].items()))

        # ------------------------------------------- 5. cold start, N apps
        log("stopping the agent (SIGTERM; its apps keep running)")
        agent.stop()
        agent = None
        all_apps = [app_name(i) for i in range(a.cold_apps)]
        for x in all_apps[a.apps :]:
            await kv.put(x, spec_yaml(x))
        all_ids = [f"{x}-0" for x in all_apps]
        data_cold = os.path.join(a.base, "data-cold")
        res["cold"] = {}
        for n, (kind, desc) in enumerate((("cold", "empty data dir"), ("warm", "data dir of the previous run"))):
            log(f"rebooting the private systemd; agent start with {a.cold_apps} apps, {desc}")
            sd.kill()
            sd = PrivateSystemd(a.script, reg, str(n + 2))
            sd_cpu0 = cpu_seconds(sd.pid)
            agent = Agent(a, url, sd, data_cold, reg, n + 2)
            t0 = agent.t_spawn
            fut = st.expect(all_running(all_ids, t0))
            r = {}
            try:
                await wait(fut, a.cold_timeout, f"{a.cold_apps} apps running")
                r["status_s"] = time.monotonic() - t0
            except Fail:
                r["status_s"] = None
                r["partial"] = running_count(st, all_ids, t0)
            r["agent_cpu"] = cpu_seconds(agent.pid)
            r["systemd_cpu"] = cpu_seconds(sd.pid) - sd_cpu0
            # dbus-daemon is socket-activated by the first client: all its CPU.
            dbus_pid = sd.dbus_pid()
            r["dbus_cpu"] = cpu_seconds(dbus_pid) if dbus_pid else 0
            r["ready_s"] = (agent.ready.result() - t0) if agent.ready.done() else None
            names = [f"narun-app@{x}.service" for x in all_apps]
            props = await show(sd, names, ["ActiveState", "InactiveExitTimestampMonotonic",
                                           "ActiveEnterTimestampMonotonic"])
            up = [p for p in props if p.get("ActiveState") == "active"]
            act = [mono(p, "ActiveEnterTimestampMonotonic") for p in up]
            spans = sorted((mono(p, "InactiveExitTimestampMonotonic"), mono(p, "ActiveEnterTimestampMonotonic"))
                           for p in up)
            # How many units were between fork and active at once (1 = the
            # agent starts them one after the other).
            r["peak_starting"] = peak_overlap(spans)
            r["exec_med"] = med([e - b for b, e in spans])
            r["gap_med"] = med([spans[k + 1][0] - spans[k][1] for k in range(len(spans) - 1)])
            r["active_n"] = len(act)
            r["first_active_s"] = (min(act) - t0) if act else None
            r["active_s"] = (max(act) - t0) if len(act) == a.cold_apps else None
            agent.check()
            res["cold"][kind] = r
            log(f"{kind}: {r}")
            if kind == "cold":
                agent.stop()
                agent = None
        await asyncio.sleep(2)
        res["mem200"] = {"mem": mem_kib(agent.pid), "smaps": smaps(agent.pid)}
        agent.stop()
        agent = None

        # systemd alone: the same number of units, started by one
        # `systemctl start` (systemd runs the jobs in parallel), with narun's
        # properties and with only Type=exec + DynamicUser=yes.
        res["parallel"] = {}
        for kind in ("narun", "bare"):
            log(f"rebooting the private systemd; {a.cold_apps} units ({kind} properties) in one systemctl start")
            sd.kill()
            sd = PrivateSystemd(a.script, reg, f"par-{kind}")
            par = [f"{PREFIX}-par{kind[0]}-{i:03d}" for i in range(a.cold_apps)]
            for x in par:
                if kind == "narun":
                    text = unit_file(x, f"{sleep_bin} 1000000")
                else:
                    text = f"[Service]\nType=exec\nDynamicUser=yes\nExecStart={sleep_bin} 1000000\n"
                with open(f"/proc/{sd.pid}/root/run/systemd/system/{x}.service", "w") as f:
                    f.write(text)
            await run(*sd.ns, "systemctl", "daemon-reload")
            sd_cpu0 = cpu_seconds(sd.pid)
            t0 = time.monotonic()
            await run(*sd.ns, "systemctl", "start", *[f"{x}.service" for x in par], check=False, timeout=120)
            props = await show(sd, [f"{x}.service" for x in par],
                               ["ActiveState", "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"])
            up = [p for p in props if p.get("ActiveState") == "active"]
            spans = sorted((mono(p, "InactiveExitTimestampMonotonic"), mono(p, "ActiveEnterTimestampMonotonic"))
                           for p in up)
            r = {"active_n": len(up), "peak_starting": peak_overlap(spans),
                 "exec_med": med([e - b for b, e in spans]), "systemd_cpu": cpu_seconds(sd.pid) - sd_cpu0,
                 "active_s": (max(e for _, e in spans) - t0) if len(up) == a.cold_apps else None}
            res["parallel"][kind] = r
            log(f"parallel {kind}: {r}")
        res["env"]["load_end"] = read("/proc/loadavg").split()[:3]
        res["env"]["builders_end"] = busy_builders()
        await nc.close()
    finally:
        if agent:
            agent.stop(signal.SIGKILL)
        if sd:
            sd.kill()
        if nats_proc:
            nats_proc.kill()
            nats_proc.wait()
            reg.remove("nats")
    return res


def narun_like_props(app=f"{PREFIX}-sr"):
    """What narun's unit rendering sets (src/node/units.rs), as systemd-run -p."""
    out = []
    for p in narun_like_assignments(app):
        out += ["-p", p]
    return out


def narun_like_assignments(app):
    """narun's unit properties (src/node/units.rs) as unit-file assignments."""
    return [
        "Type=exec", "Slice=narun.slice",
        f"StateDirectory=narun-app/{app}", f"WorkingDirectory=/var/lib/narun-app/{app}",
        f"Environment=NARUN_APP_NAME={app} NARUN_INSTANCE_ID={app}-0 NARUN_NODE_ID={NODE}",
        "KillMode=control-group", "TimeoutStopSec=10", "Restart=on-failure", "RestartSec=2",
        "StartLimitBurst=5", "StartLimitIntervalSec=600",
        "StandardOutput=journal", "StandardError=journal", f"SyslogIdentifier={app}",
        f"LogExtraFields=NARUN_APP={app}",
        "MemoryAccounting=yes", "CPUAccounting=yes", "TasksAccounting=yes",
        "DynamicUser=yes", f"User=narun-{app}",
        "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
        "PrivateDevices=yes", "PrivateIPC=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes", "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes",
        "ProtectProc=invisible", "RestrictSUIDSGID=yes", "LockPersonality=yes", "RestrictRealtime=yes",
        "RestrictNamespaces=yes", "SystemCallArchitectures=native", "CapabilityBoundingSet=",
        "AmbientCapabilities=", "UMask=0077",
    ]


def unit_file(app, exec_start):
    """A unit file with narun's properties ([Unit] ones in [Unit])."""
    unit_keys = ("StartLimitBurst", "StartLimitIntervalSec")
    props = narun_like_assignments(app)
    u = [p for p in props if p.split("=")[0] in unit_keys]
    sv = [p for p in props if p.split("=")[0] not in unit_keys]
    return ("[Unit]\nDescription=narun-like unit {app}\n" + "\n".join(u)
            + f"\n[Service]\nExecStart={exec_start}\n" + "\n".join(sv) + "\n")


def busy_builders():
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit() and comm(d) in ("rustc", "cargo", "cc1", "ld", "cc1plus"):
            n += 1
    return n


# --------------------------------------------------------------------- table


def verdict(ok):
    return "PASS" if ok else "MISS"


def report(a, res, wall):
    out = []
    w = out.append
    e = res["env"]
    agent = f"{a.agent} ({os.path.getsize(a.agent) / 1e6:.1f} MB)" if a.agent else "narun node"
    w(f"narun node benchmark: {a.version}, agent {agent}; {e.get('systemd', '?')}; nats-server {e.get('nats', '?')}; "
      f"{os.cpu_count()} cores; agent --status-interval 300ms"
      + (f", environment {' '.join(a.agent_env)}" if a.agent_env else ""))
    w(f"load average at start {' '.join(e['load_start'])}, at end {' '.join(e.get('load_end', ['?']))}; "
      f"compiler processes running at start/end: {e['builders_start']}/{e.get('builders_end', '?')}"
      + ("  (!) timings disturbed by builds" if e["builders_start"] or e.get("builders_end") else ""))
    w("")
    w("1. Agent memory (/proc/<agent>/status)       VmRSS      VmHWM      target      verdict  RssAnon    "
      "resident: binary / libs / anon")
    rows = (("idle0", "idle, 0 apps", 8), ("idle50", f"{a.apps} apps running", 12), ("mem200", "", None))
    for key, label, tgt in rows:
        if key not in res:
            continue
        if key == "mem200":
            m, sm = res["mem200"]["mem"], res["mem200"]["smaps"]
            label = f"{a.cold_apps} apps (after both cold starts)"
            tv = f"{'-':<11} {'':<8}"
        else:
            m, sm = res[key]["mem"], res[key]["smaps"]
            tv = f"{f'<= {tgt} MiB':<11} {verdict(m['VmHWM'] <= tgt * 1024):<8}"
        w(f"   {label:<41} {mib(m['VmRSS']):<10} {mib(m['VmHWM']):<10} {tv} {mib(m['RssAnon']):<10} "
          f"{mib(sm['exe'])} / {mib(sm['libs'])} / {mib(sm['anon'])}")
    w("   (verdict on VmHWM, the peak; the binary's pages are file-backed, shared with the page cache;")
    w(f"   how much of the binary a fault maps follows the readahead of its disk: read_ahead_kb={e['readahead']})")
    i0, i5 = res["idle0"], res["idle50"]
    per50 = (i5["mem"]["RssAnon"] - i0["mem"]["RssAnon"]) / a.apps
    if "mem200" in res:
        i2 = res["mem200"]
        per200 = (i2["mem"]["RssAnon"] - i0["mem"]["RssAnon"]) / a.cold_apps
        w(f"   anonymous memory per app: {per50:.0f} KiB ({a.apps} apps), {per200:.0f} KiB ({a.cold_apps} apps, "
          f"another agent process); threads: {i0['mem'].get('Threads')} idle, {i5['mem'].get('Threads')} with "
          f"{a.apps} apps, {i2['mem'].get('Threads')} with {a.cold_apps}")
    else:
        w(f"   anonymous memory per app: {per50:.0f} KiB ({a.apps} apps); threads: {i0['mem'].get('Threads')} "
          f"idle, {i5['mem'].get('Threads')} with {a.apps} apps")
    w(f"   idle CPU over {a.idle_secs:.0f} s, % of one core, agent / systemd / dbus-daemon: "
      f"0 apps {i0['cpu'][0]:.1f} / {i0['cpu'][1]:.1f} / {i0['cpu'][2]:.1f}; "
      f"{a.apps} apps {i5['cpu'][0]:.1f} / {i5['cpu'][1]:.1f} / {i5['cpu'][2]:.1f}")
    w(f"   D-Bus method calls per second at idle, over {a.idle_secs:.0f} s: 0 apps {i0['dbus']:.0f}; "
      f"{a.apps} apps {i5['dbus']:.0f} (a full sweep every 3 s reads each unit's state)")
    w(f"   deploying {a.apps - 1} apps at once (first fetch of each binary): {res['deploy_s']:.2f} s until all "
      f"reported running")
    w("")
    if a.memory:
        w(f"(--memory: sections 2-4 not run; measurements took {wall:.0f} s)")
        return "\n".join(out)
    for key, label in (("lat1", "1 app deployed"), ("lat50", f"{a.apps} apps deployed")):
        lat = res[key]
        n = len(lat["narun"])
        w(f"2{'a' if key == 'lat1' else 'b'}. Spec write -> unit active, binary cached, {label}, n={n}"
          .ljust(83) + "median     p90")
        rows = (
            ("bare", "active", "(a) systemd-run -p DynamicUser=yes sleep: start -> active"),
            ("props", "active", "(b) systemd-run with narun's unit properties: start -> active"),
            ("narun", "active", "(c) narun: KV put (replicas 1->2) -> ActiveState=active"),
            ("narun", "status", "    narun: KV put -> status \"running\" received (NATS)"),
        )
        for kind, k, lab in rows:
            v = [x[k] for x in lat[kind]]
            w(f"   {lab:<79} {ms(med(v)):<10} {ms(p90(v))}")
        nm = lambda kd, f: med([x[f] for x in lat[kd]])
        w("   where the time goes (medians):")
        w(f"     (a) command start -> fork {ms(nm('bare', 'fork'))} (nsenter, systemd-run, D-Bus), "
          f"fork -> active {ms(nm('bare', 'exec'))} (Type=simple: active at fork)")
        w(f"     (b) command start -> fork {ms(nm('props', 'fork'))}, fork -> active {ms(nm('props', 'exec'))}"
          f" (Type=exec: namespaces, mounts, dynamic user, exec)")
        w(f"     (c) put -> \"starting\" published {ms(nm('narun', 'starting'))}, put -> fork "
          f"{ms(nm('narun', 'fork'))} (KV watch, agent loop, reconcile, D-Bus),")
        w(f"         fork -> active {ms(nm('narun', 'exec'))} (systemd), active -> \"running\" received "
          f"{ms(nm('narun', 'status_after_active'))} (agent's status sweep)")
        ca, cb, cc = nm("bare", "active"), nm("props", "active"), nm("narun", "active")
        pa, pc = p90([x["active"] for x in lat["bare"]]), p90([x["active"] for x in lat["narun"]])
        ok_m, ok_p = cc - ca <= 0.1, pc - pa <= 0.1
        w(f"   (c)/(a): median {cc / ca:.2f}x (+{ms(cc - ca)}), p90 {pc / pa:.2f}x (+{ms(pc - pa)}); "
          f"target (c) <= (a) + 100 ms: {verdict(ok_m)} (median), {verdict(ok_p)} (p90)")
        w(f"   (c)/(b), same unit properties: median {cc / cb:.2f}x ({'+' if cc >= cb else '-'}{ms(abs(cc - cb))})")
        w("")
    w("3. Crash (kill -9 of MainPID) -> active again with a new MainPID".ljust(83) + "median     p90")
    for g, label in (("slow", "spec default restart.delay"), ("fast", "restart.delay: 100ms")):
        rows = res["crash"][g]
        ru = rows[0]["restart_usec"] if rows else "?"
        v = [r["active"] for r in rows]
        lab = f"{label} (RestartUSec={ru}), n={len(rows)}: kill -> active"
        w(f"   {lab:<79} {ms(med(v)):<10} {ms(p90(v))}")
        v = [r["status"] for r in rows]
        lab = '   kill -> status "running" received'
        w(f"   {lab:<79} {ms(med(v)):<10} {ms(p90(v))}")
        cr = med([r["crashed"] for r in rows])
        w(f"   kill -> \"crashed\" published {ms(cr) if cr == cr else 'not seen (restarted between sweeps)'}; "
          f"active -> \"running\" received {ms(med([r['status_after_active'] for r in rows]))}")
    w("")
    w(f"4. Cold start of {a.cold_apps} apps (1 replica each): agent spawned -> all units active".ljust(83)
      + "target <= 10 s")
    for kind, label in (("cold", "cold cache (empty data dir: every binary fetched)"),
                        ("warm", "warm cache (data dir kept: specs and binaries on disk)")):
        r = res["cold"][kind]
        if r["active_s"] is not None:
            act = f"{r['active_s']:.2f} s"
        else:
            act = f"> {a.cold_timeout:.0f} s ({r['active_n']}/{a.cold_apps} active)"
        stt = f"{r['status_s']:.2f} s" if r["status_s"] is not None else f"not all ({r.get('partial', 0)})"
        first = f"{r['first_active_s']:.2f} s" if r["first_active_s"] is not None else "n/a"
        rdy = f"{r['ready_s']:.2f} s" if r["ready_s"] is not None else "n/a"
        lab = f"{label}: all active"
        w(f"   {lab:<79} {act:<10} {verdict(r['active_s'] is not None and r['active_s'] <= 10)}")
        w(f"      first unit active {first}, READY=1 {rdy}, all reported running {stt}")
        w(f"      units between fork and active at once: at most {r['peak_starting']}; per unit: fork -> active "
          f"{ms(r['exec_med'])}, then {ms(r['gap_med'])} until the next fork (medians)")
        w(f"      CPU used meanwhile: agent {r['agent_cpu']:.2f} s, systemd {r['systemd_cpu']:.2f} s, "
          f"dbus-daemon {r['dbus_cpu']:.2f} s")
    for kind, what in (("narun", "narun's unit properties"), ("bare", "Type=exec + DynamicUser only")):
        r = res["parallel"][kind]
        act = f"{r['active_s']:.2f} s" if r["active_s"] is not None else f"({r['active_n']}/{a.cold_apps} active)"
        lab = f"systemd alone ({what}), one systemctl start: all active"
        w(f"   {lab:<79} {act}")
        w(f"      units between fork and active at once: at most {r['peak_starting']}; fork -> active "
          f"{ms(r['exec_med'])} (median); systemd CPU {r['systemd_cpu']:.2f} s")
    w("")
    w(f"binaries: {a.cold_apps} copies of /bin/sleep ({os.path.getsize('/bin/sleep') // 1024} KiB) uploaded in "
      f"{res['upload_s']:.1f} s; measurements took {wall:.0f} s")
    return "\n".join(out)


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--narun", required=True)
    p.add_argument("--agent", default="", help="narun-node, the agent's own binary (default: NARUN node)")
    p.add_argument("--agent-env", action="append", default=[], metavar="KEY=VALUE",
                   help="the agent's environment as its unit sets it (repeatable)")
    p.add_argument("--base", required=True, help="a fresh directory under /var/lib")
    p.add_argument("--script", required=True, help="src/private-systemd.sh")
    p.add_argument("--version", default="narun")
    p.add_argument("--apps", type=int, default=50)
    p.add_argument("--cold-apps", type=int, default=200)
    p.add_argument("--reps", type=int, default=12)
    p.add_argument("--crashes", type=int, default=5)
    # Two cycles of the agent's full sweep (every tenth status tick, 300 ms):
    # a shorter window sees one or none depending on its phase.
    p.add_argument("--idle-secs", type=float, default=6)
    p.add_argument("--settle", type=float, default=0.4)
    p.add_argument("--cold-timeout", type=float, default=90)
    p.add_argument("--memory", action="store_true", help="section 1 only: agent memory idle and with --apps apps")
    a = p.parse_args()
    if a.apps < 1 + 2 * a.crashes or a.cold_apps < a.apps:
        p.error("need --apps >= 1 + 2 * --crashes and --cold-apps >= --apps")
    return a


if __name__ == "__main__":
    a = parse()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t = time.monotonic()
    try:
        res = asyncio.run(main(a))
    except Fail as e:
        print(f"node bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    print(report(a, res, time.monotonic() - t), flush=True)
