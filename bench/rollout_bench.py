#!/usr/bin/env python3
"""Rollouts under load, driven by `bench/node.sh --rollout` (run that).

A private systemd, a nats-server, the release `narun node` and `narun
gateway`, and the release `examples/hello` deployed with `narun deploy`
(as a user does). A steady open-loop load goes through the gateway the
whole time (a fixed request rate on keep-alive connections, every request
timed). Then, alternately:

- a replacement: `narun deploy --wait` of a new version (an env change) of
  the one running replica: the new one starts next to the old one, the old
  one drains once the new one is ready, the new one moves back to the main
  unit name;
- the baseline, a scale-up: `narun deploy --wait` adding a second replica
  (nothing to replace), then the scale-down.

Reported: deploy -> new version ready (the `--wait` command's wall time,
and systemd's `ActiveEnterTimestampMonotonic` of the surge unit, which a
Type=notify unit reaches at READY=1) against the same for a scale-up; and
the latency of requests sent while a replacement runs (from the deploy
until the old unit and the surge unit are gone) against requests sent in
steady state, in the same run. Failed requests are counted (target: 0).
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import node_bench as nb
from node_bench import Fail, log, med, ms, p90

APP = "rbench"
UNIT = f"narun-app@{APP}.service"
NEXT = f"narun-app@{APP}.next.service"


def spec(version, replicas):
    return (
        f'name: {APP}\ntag: v1\nargs: ["--service", "{APP}"]\n'
        f'env:\n  - {{name: VERSION, value: "{version}"}}\n'
        f"nodes:\n  - name: {nb.NODE}\n    replicas: {replicas}\n"
    )


class Load:
    """Open loop: `rate` requests per second over `conns` keep-alive
    HTTP/1.1 connections; each request's send time, latency and status."""

    BODY = b'{"name":"bench"}'

    def __init__(self, port, rate, conns):
        self.port, self.rate, self.conns = port, rate, conns
        self.samples = []  # (t_send, latency_s, status)
        self.stop = False
        self.tasks = []

    def request(self):
        return (
            b"POST /hello/ HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(self.BODY)}\r\n\r\n".encode()
            + self.BODY
        )

    async def conn(self, offset):
        period = self.conns / self.rate
        reader = writer = None
        nxt = time.monotonic() + offset * period / self.conns
        while not self.stop:
            now = time.monotonic()
            if nxt > now:
                await asyncio.sleep(nxt - now)
            nxt += period
            t0 = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(self.request())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                status = 0
                if writer is not None:
                    writer.close()
                reader = writer = None
            self.samples.append((t0, time.monotonic() - t0, status))

    def start(self):
        self.tasks = [asyncio.get_running_loop().create_task(self.conn(i)) for i in range(self.conns)]

    async def finish(self):
        self.stop = True
        await asyncio.gather(*self.tasks)


async def deploy(a, path, yaml):
    with open(path, "w") as f:
        f.write(yaml)
    t0 = time.monotonic()
    out = await nb.run(a.narun, "deploy", "-f", path, a.hello, "--wait=120s", "--nats-url", a.url,
                       "-o", "json", check=False, timeout=180)
    t1 = time.monotonic()
    try:
        ok = json.loads(out)["wait"]["all_running"] is True
    except (ValueError, KeyError, TypeError):
        ok = False
    return t0, t1, out if not ok else None


async def gone(sd, units, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [(await nb.show1(sd, u, ["ActiveState"])).get("ActiveState", "") for u in units]
        if all(s in ("inactive", "") for s in states):
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise Fail(f"{units} still there after {timeout} s")


def window(samples, spans):
    return [s for s in samples if any(b <= s[0] <= e for b, e in spans)]


def lat_stats(rows):
    lat = sorted(r[1] for r in rows if r[2] == 200)
    if not lat:
        return {"n": len(rows), "failed": len(rows), "p50": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return {"n": len(rows), "failed": sum(1 for r in rows if r[2] != 200), "p50": med(lat), "p99": p99,
            "max": lat[-1]}


async def main(a):
    reg = nb.Registry(os.path.join(a.base, "pids"))
    sd = agent = nats_proc = gw = None
    res = {}
    try:
        nats_proc, a.url = nb.start_nats(a.base, reg)

        log("booting a private systemd")
        sd = nb.PrivateSystemd(a.script, reg, "r")
        agent = nb.Agent(a, a.url, sd, os.path.join(a.base, "data-rollout"), reg, "r")
        await agent.wait_ready()

        http_port = nb.free_port()
        cfg = os.path.join(a.base, "gateway.yaml")
        with open(cfg, "w") as f:
            f.write(f'nats_url: "{a.url}"\nserver_addr: "127.0.0.1:{http_port}"\nmetrics_addr: ""\n'
                    f'routes:\n  - path: "/hello/"\n    methods: ["POST"]\n    service: "{APP}"\n')
        gw = subprocess.Popen([a.narun, "gateway", "--config", cfg], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(a.base, "gw.log"), "w"))
        reg.add("gateway", gw.pid, "narun")

        path = os.path.join(a.base, "rbench.yaml")
        log("first deploy")
        t0, t1, err = await deploy(a, path, spec(0, 1))
        if err:
            raise Fail(f"first deploy: {err}")
        load = Load(http_port, a.rate, a.conns)
        load.start()
        await asyncio.sleep(a.steady)
        steady = [(time.monotonic() - a.steady + 0.5, time.monotonic())]
        replace, scale, during = [], [], []
        for i in range(1, a.reps + 1):
            agent.check()
            # Replacement.
            t0, t1, err = await deploy(a, path, spec(i, 1))
            if err:
                raise Fail(f"replacement {i}: {err}")
            nxt = await nb.show1(sd, NEXT, ["ActiveEnterTimestampMonotonic"])
            ready = nb.mono(nxt, "ActiveEnterTimestampMonotonic")
            t_done = await gone(sd, [NEXT])
            replace.append({"wait": t1 - t0, "ready": (ready - t0) if ready else None, "done": t_done - t0})
            during.append((t0, t_done))
            # Quiet: steady state again.
            q0 = time.monotonic()
            await asyncio.sleep(a.gap)
            steady.append((q0 + 0.5, time.monotonic()))
            # Baseline: a scale-up (nothing replaced), then back.
            t0, t1, err = await deploy(a, path, spec(i, 2))
            if err:
                raise Fail(f"scale-up {i}: {err}")
            u1 = await nb.show1(sd, f"narun-app@{APP}:1.service", ["ActiveEnterTimestampMonotonic"])
            ready = nb.mono(u1, "ActiveEnterTimestampMonotonic")
            scale.append({"wait": t1 - t0, "ready": (ready - t0) if ready else None})
            await deploy(a, path, spec(i, 1))
            await gone(sd, [f"narun-app@{APP}:1.service"])
            await asyncio.sleep(a.gap)
            log(f"round {i}: replacement --wait {replace[-1]['wait']:.2f} s, scale-up --wait "
                f"{scale[-1]['wait']:.2f} s")
        await load.finish()
        res["replace"], res["scale"] = replace, scale
        res["steady"] = lat_stats(window(load.samples, steady))
        res["during"] = lat_stats(window(load.samples, during))
        res["all"] = lat_stats(load.samples)
        res["rate"] = len(load.samples) / (load.samples[-1][0] - load.samples[0][0])
        return res
    finally:
        for p, name in ((gw, "gateway"), (nats_proc, "nats")):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                reg.remove(name)
        if agent is not None:
            agent.stop()


def report(a, res):
    out = []
    w = out.append
    rep, sc = res["replace"], res["scale"]

    def col(rows, key):
        v = [r[key] for r in rows if r[key] is not None]
        return f"median {ms(med(v))}, p90 {ms(p90(v))}" if v else "n/a"

    w(f"narun rollout benchmark: {a.version}; {a.reps} replacements of one replica of examples/hello, "
      f"open-loop load {a.rate:.0f} req/s on {a.conns} connections through narun gateway")
    w("")
    w("1. deploy -> new version ready")
    w(f"   replacement: narun deploy --wait returned        {col(rep, 'wait')}")
    w(f"   replacement: surge unit active (READY=1)          {col(rep, 'ready')}")
    w(f"   replacement: old unit stopped and back on main    {col(rep, 'done')}")
    w(f"   baseline scale-up: narun deploy --wait returned   {col(sc, 'wait')}")
    w(f"   baseline scale-up: new unit active (READY=1)      {col(sc, 'ready')}")
    rw = med([r["wait"] for r in rep]) / med([r["wait"] for r in sc])
    w(f"   ratio replacement / scale-up (--wait, medians)    {rw:.2f}x   target <= 1.5x "
      f"{'PASS' if rw <= 1.5 else 'MISS'}")
    w("")
    s, d = res["steady"], res["during"]
    w("2. request latency through the gateway (successful requests)")
    w(f"   steady state        n={s['n']:<6} p50 {ms(s['p50']):<9} p99 {ms(s['p99']):<9} max {ms(s['max'])}")
    w(f"   during replacements n={d['n']:<6} p50 {ms(d['p50']):<9} p99 {ms(d['p99']):<9} max {ms(d['max'])}")
    r99 = d["p99"] / s["p99"] if s["p99"] == s["p99"] and s["p99"] > 0 else float("nan")
    w(f"   added p99 latency during a replacement: {ms(d['p99'] - s['p99'])} ({r99:.2f}x steady)")
    w("")
    a_ = res["all"]
    w(f"3. failed requests: {a_['failed']} of {a_['n']} ({res['rate']:.0f} req/s sent)   target 0 "
      f"{'PASS' if a_['failed'] == 0 else 'MISS'}")
    return "\n".join(out)


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--narun", required=True)
    p.add_argument("--hello", required=True, help="the release examples/hello")
    p.add_argument("--base", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--version", default="narun")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--steady", type=float, default=5)
    p.add_argument("--gap", type=float, default=2)
    return p.parse_args()


if __name__ == "__main__":
    a = parse()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        res = asyncio.run(main(a))
    except Fail as e:
        print(f"rollout bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    print(report(a, res), flush=True)
