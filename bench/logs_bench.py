#!/usr/bin/env python3
"""Log forwarding throughput, driven by `bench/node.sh --logs` (run that).

A private systemd, a nats-server and the release `narun node` following the
private systemd's journal (`--journalctl "nsenter -t <systemd> -m -p
journalctl"`, as `narun dev` does). One replica is deployed with `narun
deploy --wait` as a user does: /bin/sh (a copy of dash) running a script
that waits for a trigger file in its state directory, then runs `seq` to
print N numbered lines of a fixed length as fast as it can, then sleeps. The trigger lets
the agent's CPU be read right before the first line.

journald's rate limit (RateLimitIntervalSec=30s, RateLimitBurst=10000 per
unit, the burst scaled up with the free space of the journal's file system)
would drop most of a burst of N lines; a journald.conf drop-in in the
private systemd's /run turns it off (RateLimitIntervalSec=0) and journald is
restarted before the agent starts. `--journald-default` keeps the default,
to see what journald itself drops.

Reported, from timestamps taken on one host (CLOCK_REALTIME on both sides):
journald's own rate (the lines' __REALTIME_TIMESTAMP, i.e. when journald
accepted them), the rate at which lines were stored in stream `narun-logs`
(the server's store time of each message, from the first line to the last),
their ratio, how far the last line lagged; the CPU time (utime + stime from
/proc/<pid>/stat) of the agent, of its journalctl, of journald and of
nats-server per 1,000 lines; and whether every line is in the stream
exactly once, in order, with its journal cursor as its message id.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import node_bench as nb
from node_bench import Fail, log

APP = f"{nb.PREFIX}-logs"  # nbench-*: node.sh's trap removes its state directory
UNIT = f"narun-app@{APP}.service"
SUBJECT = f"logs.{APP}.{nb.NODE}"
STREAM = "narun-logs"
LINE_RE = re.compile(r"^line (\d+) ")
DROPIN = "zz-narun-logs-bench.conf"


def line_format(width):
    """seq -f format: `line 0000042 ` then padding to `width` bytes."""
    return "line %07.0f " + "x" * max(0, width - len("line 0000001 "))


def write_script(a, path):
    """The replica's program, run by a copy of /bin/sh. A file, not `sh -c`:
    narun passes args with spaces or quotes only through its exec wrapper
    (narun-exec), which the agent here does not have."""
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "# Wait for the benchmark's trigger (in the state directory, the cwd).\n"
                "while [ ! -e go ]; do sleep 0.05; done\n"
                f"seq -f '{line_format(a.width)}' 1 {a.lines}\n"
                "exec sleep 1000000\n")
    os.chmod(path, 0o644)


def spec(script):
    return (f"name: {APP}\ntag: v1\nargs: [{json.dumps(script)}]\n"
            f"nodes:\n  - name: {nb.NODE}\n    replicas: 1\n")


@contextmanager
def forwarding_agent(journalctl):
    """node_bench.Agent starts the agent with `--journalctl ""` (no log
    forwarding); here it follows the private systemd's journal. The admin
    UI and metrics listeners are turned off (no port clash with a node test
    running at the same time)."""
    real = subprocess.Popen

    def popen(cmd, *args, **kw):
        if isinstance(cmd, list) and "--journalctl" in cmd:
            i = cmd.index("--journalctl")
            cmd = cmd[:i + 1] + [journalctl] + cmd[i + 2:] + ["--admin-addr", "", "--metrics-addr", ""]
        return real(cmd, *args, **kw)

    subprocess.Popen = popen
    try:
        yield
    finally:
        subprocess.Popen = real


def descendants(pid):
    """Every descendant; children of every thread (tokio spawns from its
    worker threads, /proc/PID/task/PID/children lists the main thread's)."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        for c in nb.read(f"/proc/{pid}/task/{tid}/children").split():
            out.append(int(c))
            out += descendants(int(c))
    return out


def journald_pid(sd):
    for c in nb.children(sd.pid):
        if nb.comm(c) == "systemd-journal":
            return c
    return None


async def configure_journald(a, sd):
    if a.journald_default:
        return "journald default rate limit (RateLimitIntervalSec=30s, RateLimitBurst=10000, scaled by free space)"
    d = f"/proc/{sd.pid}/root/run/systemd/journald.conf.d"
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, DROPIN), "w") as f:
        f.write("[Journal]\nRateLimitIntervalSec=0\n")
    await nb.run(*sd.ns, "systemctl", "restart", "systemd-journald.service")
    return "journald rate limit off in the private systemd (drop-in RateLimitIntervalSec=0)"


async def read_journal(sd):
    """This unit's lines: [(number, realtime_s, cursor)] in journal order,
    plus the count of other lines of the unit."""
    out = await nb.run(*sd.ns, "journalctl", "-u", UNIT, "-o", "json", "--output-fields=MESSAGE",
                       "--no-pager", timeout=120)
    rows, other = [], 0
    for raw in out.splitlines():
        try:
            r = json.loads(raw)
        except ValueError:
            continue
        m = LINE_RE.match(r.get("MESSAGE") if isinstance(r.get("MESSAGE"), str) else "")
        if not m:
            other += 1
            continue
        rows.append((int(m.group(1)), int(r["__REALTIME_TIMESTAMP"]) / 1e6, r["__CURSOR"]))
    return rows, other


async def journald_suppressed(sd):
    """Lines journald's rate limit dropped (its own "Suppressed N messages")."""
    out = await nb.run(*sd.ns, "journalctl", "-o", "cat", "--no-pager", "SYSLOG_IDENTIFIER=systemd-journald",
                       check=False)
    return sum(int(m.group(1)) for m in re.finditer(r"Suppressed (\d+) messages from " + re.escape(UNIT), out))


async def read_stream(js, expected):
    """Every message of SUBJECT: [(stream_seq, stored_s, message, instance, msg_id)]."""
    cfg = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                         inactive_threshold=30.0)
    psub = await js.pull_subscribe(SUBJECT, stream=STREAM, config=cfg)
    rows = []
    while True:
        try:
            msgs = await psub.fetch(batch=5000, timeout=3)
        except nats.errors.TimeoutError:
            break
        for m in msgs:
            md = m.metadata
            try:
                e = json.loads(m.data)
            except ValueError:
                e = {}
            rows.append((md.sequence.stream, md.timestamp.timestamp(), e.get("message", ""),
                         e.get("instance_id"), (m.headers or {}).get("Nats-Msg-Id")))
        if msgs and msgs[-1].metadata.num_pending == 0 and len(rows) >= expected:
            break
    await psub.unsubscribe()
    return rows


def cpu_of(pids):
    return {k: nb.cpu_seconds(p) if p else 0.0 for k, p in pids.items()}


async def main(a):
    reg = nb.Registry(os.path.join(a.base, "pids"))
    sd = agent = nats_proc = nc = None
    res = {"env": {"load_start": nb.read("/proc/loadavg").split()[:3], "builders_start": nb.busy_builders()}}
    sh = os.path.join(a.base, "logsh")
    shutil.copyfile(os.path.realpath("/bin/sh"), sh)
    os.chmod(sh, 0o755)
    script = os.path.join(a.base, "print-lines.sh")  # readable by the app's dynamic user
    write_script(a, script)
    try:
        nats_proc, a.url = nb.start_nats(a.base, reg)
        nc = await nats.connect(a.url, connect_timeout=5)
        js = nc.jetstream()
        res["env"]["nats"] = nc._server_info.get("version", "?")

        log("booting a private systemd")
        sd = nb.PrivateSystemd(a.script, reg, "l")
        res["env"]["systemd"] = (await nb.run(*sd.ns, "systemctl", "--version")).splitlines()[0]
        res["journald_cfg"] = await configure_journald(a, sd)

        journalctl = f"nsenter -t {sd.pid} -m -p journalctl"
        with forwarding_agent(journalctl):
            agent = nb.Agent(a, a.url, sd, os.path.join(a.base, "data-logs"), reg, "l")
        await agent.wait_ready()

        log(f"deploying {APP} ({a.lines} lines of {a.width} bytes once triggered)")
        path = os.path.join(a.base, f"{APP}.yaml")
        with open(path, "w") as f:
            f.write(spec(script))
        out = await nb.run(a.narun, "deploy", "-f", path, sh, "--wait=60s", "--nats-url", a.url, "-o", "json",
                           check=False, timeout=120)
        try:
            ok = json.loads(out)["wait"]["all_running"] is True
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise Fail(f"narun deploy --wait: {out.strip()[-800:]}\n{agent.log_tail()}")
        state_dir = f"/proc/{sd.pid}/root/var/lib/private/narun-app/{APP}"
        if not os.path.isdir(state_dir):
            raise Fail(f"no state directory {state_dir}")

        jc = [p for p in descendants(agent.pid) if nb.comm(p) == "journalctl"]
        if not jc:
            tree = [(p, nb.comm(p)) for p in descendants(agent.pid)]
            cmd = nb.read(f"/proc/{agent.pid}/cmdline").split("\0")
            raise Fail(f"the agent runs no journalctl ({cmd}; children {tree}):\n{agent.log_tail()}")
        pids = {"agent": agent.pid, "journalctl": jc[0], "journald": journald_pid(sd), "nats": nats_proc.pid}

        # The agent's idle CPU (status sweeps every 300 ms), to subtract.
        await asyncio.sleep(1)
        c0, t0 = cpu_of(pids), time.monotonic()
        await asyncio.sleep(a.idle_secs)
        c1, t1 = cpu_of(pids), time.monotonic()
        res["idle_rate"] = {k: (c1[k] - c0[k]) / (t1 - t0) for k in pids}

        log("trigger: the replica prints its lines")
        before, t_go = cpu_of(pids), time.monotonic()
        with open(os.path.join(state_dir, "go"), "w"):
            pass
        # Done when the stream holds N lines, or nothing new came for
        # --stall seconds (lines lost: said below).
        count, last_change, last_count = 0, time.monotonic(), -1
        deadline = t_go + a.timeout
        while True:
            info = await js.stream_info(STREAM)
            count = info.state.messages
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            if count >= a.lines:
                break
            if (count > 0 and now - last_change > a.stall) or now > deadline:
                log(f"stopped waiting: {count}/{a.lines} lines in the stream")
                break
            agent.check()
            await asyncio.sleep(0.05)
        after, t_end = cpu_of(pids), time.monotonic()
        res["cpu"] = {k: after[k] - before[k] for k in pids}
        res["window"] = t_end - t_go
        agent.check()
        log(f"{count} lines in the stream after {t_end - t_go:.1f} s; reading the journal and the stream back")

        res["journal"], res["journal_other"] = await read_journal(sd)
        res["suppressed"] = await journald_suppressed(sd)
        res["stream"] = await read_stream(js, count)
        res["agent_resends"] = nb.read(agent.log_path).count("not acknowledged")
        res["env"]["load_end"] = nb.read("/proc/loadavg").split()[:3]
        res["env"]["builders_end"] = nb.busy_builders()
        return res
    finally:
        if nc is not None:
            try:
                await nc.close()
            except Exception:
                pass
        if agent is not None:
            agent.stop()
        if sd is not None:
            sd.kill()
        if nats_proc is not None:
            nats_proc.kill()
            nats_proc.wait()
            reg.remove("nats")


def rate(n, span):
    return (n - 1) / span if n > 1 and span > 0 else float("nan")


def report(a, res):
    out = []
    w = out.append
    e = res["env"]
    jrows, srows = res["journal"], res["stream"]
    n = a.lines
    w(f"narun logs benchmark: {a.version}; {e.get('systemd', '?')}; nats-server {e.get('nats', '?')}; "
      f"{os.cpu_count()} cores")
    w(f"load average at start {' '.join(e['load_start'])}, at end {' '.join(e.get('load_end', ['?']))}; "
      f"compiler processes running at start/end: {e['builders_start']}/{e.get('builders_end', '?')}"
      + ("  (!) timings disturbed by builds" if e["builders_start"] or e.get("builders_end") else ""))
    w(f"one replica: `seq` printing {n} lines of {a.width} bytes; {res['journald_cfg']}")
    w("")

    # Exactly once: every line journald accepted (all of 1..N unless its
    # rate limit dropped some: said on the journald row) is in the stream
    # once, in order, and nothing else is.
    nums = [int(m.group(1)) if (m := LINE_RE.match(msg)) else None for _, _, msg, _, _ in srows]
    jseen = {num for num, _, _ in jrows}
    j_missing = sum(1 for i in range(1, n + 1) if i not in jseen)
    seen = {}
    for x in nums:
        if x is not None:
            seen[x] = seen.get(x, 0) + 1
    missing = sum(1 for i in jseen if i not in seen)
    dups = sum(c - 1 for c in seen.values() if c > 1)
    foreign = sum(1 for x in nums if x is None or x not in jseen)
    valid = [x for x in nums if x is not None]
    in_order = all(valid[i] < valid[i + 1] for i in range(len(valid) - 1))
    cursors = {num: cur for num, _, cur in jrows}
    ids_ok = all(cursors.get(x) == mid for x, (_, _, _, _, mid) in zip(nums, srows) if x is not None)
    inst_ok = all(r[3] == f"{APP}-0" for r in srows)
    once = missing == 0 and dups == 0 and foreign == 0 and len(srows) == len(jrows) == len(jseen)

    # Rates and lag.
    jt = sorted(t for _, t, _ in jrows)
    st = sorted(t for _, t, _, _, _ in srows)
    j_span = jt[-1] - jt[0] if len(jt) > 1 else float("nan")
    s_span = st[-1] - st[0] if len(st) > 1 else float("nan")
    j_rate, s_rate = rate(len(jt), j_span), rate(len(st), s_span)
    whole = st[-1] - jt[0] if st and jt else float("nan")
    cpu, idle, win = res["cpu"], res["idle_rate"], res["window"]
    per_k = lambda k: cpu[k] / max(1, len(srows)) * 1000 * 1000  # ms per 1,000 lines
    per_k_net = lambda k: (cpu[k] - idle[k] * win) / max(1, len(srows)) * 1000 * 1000

    rows = [
        ("lines printed by the replica", f"{n}"),
        ("lines journald accepted", f"{len(jrows)}" + (
            f"  ({j_missing} dropped by journald's rate limit"
            + (f", it reported {res['suppressed']} suppressed)" if res["suppressed"]
               else "; it says how many when its 30 s window ends)") if j_missing else "")),
        ("journald rate (first -> last journal timestamp)", f"{j_rate:,.0f} lines/s  ({j_span:.2f} s)"),
        ("end to end (first -> last line stored in narun-logs)", f"{s_rate:,.0f} lines/s  ({s_span:.2f} s)"),
        ("ratio end to end / journald", f"{s_rate / j_rate:.2f}"),
        ("first line: journal -> stream", nb.ms(st[0] - jt[0]) if st and jt else "n/a"),
        ("last line: journal -> stream (backlog drained)", nb.ms(st[-1] - jt[-1]) if st and jt else "n/a"),
        ("first line in journal -> last line in stream", f"{whole:.2f} s  ({rate(len(st), whole):,.0f} lines/s)"),
        ("agent CPU per 1,000 lines", f"{per_k('agent'):.1f} ms  ({per_k_net('agent'):.1f} ms without its idle "
                                      f"{idle['agent'] * 1000:.0f} ms/s)"),
        ("  its journalctl (JSON output of every entry)", f"{per_k('journalctl'):.1f} ms"),
        ("  journald", f"{per_k('journald'):.1f} ms"),
        ("  nats-server (JetStream file store)", f"{per_k('nats'):.1f} ms"),
        ("journal's lines in the stream exactly once", f"{'yes' if once else 'NO'}: {len(srows)} messages, "
                                                       f"{missing} missing, {dups} duplicated, {foreign} foreign"),
        ("  in order, instance id, message id = journal cursor",
         f"{'yes' if in_order else 'NO'}, {'yes' if inst_ok else 'NO'}, {'yes' if ids_ok else 'NO'}"),
    ]
    wd = max(len(k) for k, _ in rows)
    for k, v in rows:
        w(f"  {k:<{wd}}  {v}")
    w("")
    w(f"CPU over {win:.1f} s (trigger -> all lines stored, polled every 50 ms): agent {cpu['agent']:.2f} s, "
      f"journalctl {cpu['journalctl']:.2f} s, journald {cpu['journald']:.2f} s, nats-server {cpu['nats']:.2f} s; "
      f"resends after an unacknowledged publish: {res['agent_resends']}; "
      f"other lines of the unit in the journal: {res['journal_other']}")
    return "\n".join(out)


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--narun", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--version", default="narun")
    p.add_argument("--lines", type=int, default=100000)
    p.add_argument("--width", type=int, default=100, help="bytes per line (at least 13)")
    p.add_argument("--journald-default", action="store_true",
                   help="keep journald's default rate limit (lines beyond it are dropped by journald)")
    p.add_argument("--idle-secs", type=float, default=2)
    p.add_argument("--stall", type=float, default=10)
    p.add_argument("--timeout", type=float, default=90)
    return p.parse_args()


if __name__ == "__main__":
    a = parse()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        res = asyncio.run(main(a))
    except Fail as e:
        print(f"logs bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    print(report(a, res), flush=True)
