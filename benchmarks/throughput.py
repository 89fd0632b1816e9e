"""Throughput benchmark: py_async_lib vs uvloop vs stdlib asyncio.

Run from the repository root::

    PYTHONPATH=. python -m benchmarks.throughput              # full run, table
    PYTHONPATH=. python -m benchmarks.throughput --quick      # smoke test (< 2 min)
    PYTHONPATH=. python -m benchmarks.throughput --only echo_protocol_1k,tasks_sleep0
    PYTHONPATH=. python -m benchmarks.throughput --loops asyncio,uvloop
    PYTHONPATH=. python -m benchmarks.throughput --json            # JSON on stdout
    PYTHONPATH=. python -m benchmarks.throughput --json out.json   # table + JSON file
    PYTHONPATH=. python -m benchmarks.throughput --plot ratios.png # bar chart
    PYTHONPATH=. python -m benchmarks.throughput --repeat 3        # best of 3
    PYTHONPATH=. python -m benchmarks.throughput --same-load 0.3   # its rate: 30 %
    PYTHONPATH=. python -m benchmarks.throughput --list            # workloads
    PYTHONPATH=. python -m benchmarks.throughput --python /usr/bin/python3.13,python3.11

Every workload runs on every selected loop: ``asyncio`` (an
asyncio.SelectorEventLoop), ``uvloop`` (when importable) and ``py_async_lib``
(when ``import py_async_lib`` works and provides ``new_event_loop()``), and on
the references of benchmarks/references.py: ``floor`` (the least a
Python-level loop must do for the row: benchmarks/floor.py for loop rows,
benchmarks/floor_server.py on libcasyncio's cffi binding for network rows,
with benchmarks/floor_io.py's loop under the streams and sock_* servers),
``c_casyncio`` (examples/echo_server.c, C on libcasyncio alone) and
``c_epoll`` (benchmarks/epoll_echo.c); a reference without a figure for a row
shows ``-``.  Each (workload, loop) pair runs in its own fresh child process
(``python -m benchmarks.throughput --child WORKLOAD LOOP`` prints one JSON
line), so loops cannot disturb each other and a crash or hang in one loop is
reported as an error for that pair while the run goes on.  A measurement is a
warm-up (--warmup, default 0.25 s) followed by --duration seconds (default
1.5 s); the default full run (17 workloads x 6 columns) takes about 5 minutes
on a 2-core machine.  uvloop and matplotlib are bench-only dependencies
(``pip install uvloop matplotlib``).  ``--python A,B`` runs the whole thing
once per interpreter (each needs uvloop, cffi and ``make ffi PYTHON=...``).

The first table shows operations per second per column, then the ratios
``ours/asyncio``, ``ours/uvloop`` and ``ours/floor`` (above 1.00x means
py_async_lib is faster), plus ``uvloop/asyncio`` for reference, and a geometric
mean row.  For the network rows further tables give the server's CPU time
per message (µs; the server process's CPU over the load generator's whole
life divided by every request it made), the load generator's p50/p99 round
trip (µs), the server's minor page faults per message, and for idle_10k the
server's memory per connection and the time to serve one message on every
connection.  The exit status is 1 if any measurement failed.

Those round trips are closed-loop: each loop runs at its own maximum
throughput, so its p50/p99 are those of a different load than its rivals'.
The "same load" table compares them at one load: after the closed-loop runs
of echo_protocol_1k, echo_unix_1k, echo_streams_1k and http_keepalive, each
is run again on every loop and on C/epoll with the load generator open-loop
(loadgen --rate) at one fixed rate for the row, --same-load (default 0.5) of
the slowest loop's closed-loop requests/s in this run: a load every loop
sustains, set by the run itself, so it follows the machine rather than a
constant that would overload a slow one or idle a fast one.  Latency counts
from each request's scheduled send time (a server that falls behind shows
its queue rather than slowing the load), cells are p50/p99 µs (p99.9 in the
JSON), ``!`` marks a run that achieved under 97 % of the rate, a last line
gives the p99 of the load generator's own send lag (inside every figure), and with
--repeat the sample with the lowest p99 is kept.  It adds 16 runs (about
40 s) to a full run; --quick skips it unless --same-load is given.

Workloads (what one "operation" is, in brackets)
------------------------------------------------
Loop-level; each repeats a fixed-size round until the duration has passed:

call_soon_chain     one callback that re-schedules itself with loop.call_soon,
                    10k times per round [callbacks run].  Cost of one
                    schedule + dispatch with a ready queue of length 1.
call_soon_burst     10k callbacks scheduled with call_soon at once, then run
                    [callbacks run].  Ready-queue throughput in bulk.
call_later_timers   10k loop.call_later timers with random delays of 0-1 ms
                    (same seeded schedule for every loop), 10 % cancelled
                    right away; the round ends when the rest have fired
                    [timers fired + cancelled].  Timer heap and cancellation.
tasks_sleep0        50k tasks each doing ``await asyncio.sleep(0)`` 3 times,
                    gathered [sleep(0) yields].  Task creation, stepping and
                    gather; 50k live tasks at once.
future_pingpong     two tasks handing control to each other through futures
                    [hand-offs].  Future completion -> task wake-up latency.
call_soon_threadsafe 2 threads hand 200k callbacks to the running loop with
                    call_soon_threadsafe [callbacks run].  The path of servers
                    whose I/O runs in another thread (executors, grpc).

Network; the server runs in the loop under test, the load comes from a
separate C process (benchmarks/loadgen.c) with --connections connections
(default 16), each sending one request and waiting for the whole response
before sending the next [requests answered].  16 connections keep a Python
server busy (with only 4 the server idles between round trips and the test
measures wake-up latency rather than throughput).  The warm-up runs on its
own connections, which are closed before the measured ones open: a fresh
server process can stay slow for the whole life of the first connections
it accepts.

echo_protocol_1k/64k  asyncio.Protocol echo server on 127.0.0.1, 1 KiB / 64 KiB.
echo_streams_1k/64k   asyncio.start_server with StreamReader/StreamWriter echo.
echo_sock_1k/64k      echo with loop.sock_accept / sock_recv / sock_sendall.
echo_unix_1k          asyncio.Protocol echo over a Unix socket, 1 KiB.
http_keepalive        minimal HTTP/1.1 keep-alive server as an asyncio.Protocol
                      (request line + headers to the blank line, 200 OK with a
                      small body), load generator in --http mode.
echo_protocol_64k_busy echo_protocol_64k while a spinning process (started and
                      stopped by the harness) keeps the load generator's CPU
                      busy: the contended case where a loop's reads can fall
                      into a slow, page-faulting mode.
echo_streams_64k_busy echo_streams_64k under the same contention: with 16
                      StreamReader buffers of 64 KiB filled and freed each
                      iteration, the heap's top is where glibc can fall into
                      trimming and faulting memory in again (see README).
idle_10k              10k idle TCP connections (--scale-connections; 2k with
                      --quick; capped by ulimit -n) to the Protocol echo
                      server; each sweep sends one 1 KiB message on every
                      connection and waits for all the echoes [messages].
                      Reports server memory per connection (RSS growth from
                      before the connections to after the first sweep) and
                      the best/median sweep time.

Noise and how it is reported
----------------------------
When at least 2 CPUs are available the child process is pinned to one CPU and
the load generator to the others (--no-pin to disable), which makes network
numbers much steadier.  Every measurement records how long its processes sat
runnable but waiting for a CPU (from /proc/thread-self/schedstat:
``cpu_wait`` for loop workloads, ``server_wait``/``loadgen_wait`` for network
ones); above 5 % the number is marked with ``*`` in the table, because other
load on the machine (a parallel build or test run) took CPU from the
benchmark and the result is mostly noise.  A warning is also printed when the
machine is busy before the run starts.  ``--repeat N`` measures each pair N
times, interleaving the loops, and keeps the best (all samples are in the
JSON).  For network workloads the JSON also records ``server_cpu`` and
``loadgen_cpu`` (CPU seconds per wall second); a ``loadgen_cpu`` near 1.0
means the load generator, not the loop, was the limit, and a note is
printed.  With 64 KiB messages on a 2-core machine both sides mostly do
kernel copies, so those ratios are compressed towards 1.

The load generator is built on demand with ``cc`` into build/loadgen (or
~/.cache/py_async_lib/loadgen if that is not writable) when missing or older
than loadgen.c; ``make loadgen`` (benchmarks/loadgen.mk) builds the same
binary, and $PY_ASYNC_LIB_LOADGEN overrides the path.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.loops import (BASELINE, LOOP_NAMES, OURS, RIVAL,
                              get_loop_factory, loop_version, probe)
from benchmarks.references import (C_CASYNCIO, C_EPOLL, FLOOR, REFERENCES,
                                   probe_reference, run_reference, skip_reason)
from benchmarks.workloads import (QUICK_SCALE_CONNECTIONS, SCALE_CONNECTIONS, WORKLOADS,
                                  RunOptions, ensure_loadgen)

#: every column of the table: the loops, then the references
COLUMNS = LOOP_NAMES + REFERENCES

DEFAULT_DURATION = 1.5
DEFAULT_WARMUP = 0.25
QUICK_DURATION = 0.25
QUICK_WARMUP = 0.05
LOADGEN_SATURATED = 0.9
DEFAULT_CONNECTIONS = 16

#: rows of the "same load" latency table, and its columns (the loops, and
#: C/epoll for what the kernel and the load generator alone take)
SAME_LOAD_WORKLOADS = ("echo_protocol_1k", "echo_unix_1k", "echo_streams_1k", "http_keepalive")
SAME_LOAD_COLUMNS = LOOP_NAMES + (C_EPOLL,)
#: the fixed rate of a row, as a fraction of the slowest loop's closed-loop
#: throughput in the same run
SAME_LOAD_FRACTION = 0.5
#: an open-loop run that achieved less than this fraction of its rate did
#: not keep up (its latencies are queueing); marked with "!"
SAME_LOAD_KEPT_UP = 0.97

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------
# child side
# --------------------------------------------------------------------------


def _cpus() -> List[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def child_main(args: argparse.Namespace) -> int:
    workload_name, loop_name = args.child
    record: Dict[str, Any] = {"workload": workload_name, "loop": loop_name}
    try:
        workload = WORKLOADS[workload_name]
        options = RunOptions(duration=args.duration, warmup=args.warmup,
                             connections=args.connections, loadgen=args.loadgen,
                             scale_connections=args.scale_connections, rate=args.rate)
        cpus = _cpus()
        if args.pin and len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[0]})
            options.loadgen_cpus = cpus[1:]
        if loop_name in REFERENCES:
            result = run_reference(loop_name, workload, options)
            if "skipped" in result:
                record["skipped"] = result["skipped"]
                print(json.dumps(record), flush=True)
                return 0
            record.update(result)
            record["ops_per_sec"] = result["ops"] / result["seconds"] if result["seconds"] > 0 else 0.0
            print(json.dumps(record), flush=True)
            return 0
        factory = get_loop_factory(loop_name)
        loop = factory()
        asyncio.set_event_loop(loop)
        try:
            result = workload.run(loop, options)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:
                pass
            asyncio.set_event_loop(None)
            loop.close()
        record.update(result)
        record["ops_per_sec"] = result["ops"] / result["seconds"] if result["seconds"] > 0 else 0.0
        record["version"] = loop_version(loop_name)
    except Exception as exc:
        traceback.print_exc()
        record["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(record), flush=True)
        return 1
    print(json.dumps(record), flush=True)
    return 0


def probe_main(name: str) -> int:
    ok, info = probe_reference(name) if name in REFERENCES else probe(name)
    print(json.dumps({"loop": name, "available": ok, "info": info}), flush=True)
    return 0 if ok else 1


# --------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def probe_loops(names: Sequence[str]) -> Dict[str, Tuple[bool, str]]:
    """Check in child processes (all at once) that each loop or reference
    works; a crash is survivable.  name -> (available, info)."""
    procs = {name: subprocess.Popen([sys.executable, "-m", "benchmarks.throughput",
                                     "--probe", name], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=_child_env())
             for name in names}
    out: Dict[str, Tuple[bool, str]] = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out[name] = (False, "probe timed out")
            continue
        out[name] = (False, f"probe exited {proc.returncode}: {_tail(stderr, 3)}")
        for line in reversed(stdout.strip().splitlines()):
            try:
                rec = json.loads(line)
                out[name] = (bool(rec["available"]), str(rec["info"]))
                break
            except (ValueError, KeyError):
                continue
    return out


def run_child(workload: str, loop: str, args: argparse.Namespace,
              loadgen: Optional[str], rate: float = 0.0) -> Dict[str, Any]:
    """One measurement in a fresh process; rate > 0: open loop at that many
    requests per second (network rows)."""
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--child", workload, loop,
           "--duration", repr(args.duration), "--warmup", repr(args.warmup),
           "--connections", str(args.connections),
           "--scale-connections", str(args.scale_connections)]
    if rate > 0:
        cmd += ["--rate", repr(float(rate))]
    if loadgen:
        cmd += ["--loadgen", loadgen]
    if not args.pin:
        cmd.append("--no-pin")
    timeout = 60 + 10 * (args.duration + args.warmup) + (
        180 if WORKLOADS[workload].spec is not None and WORKLOADS[workload].spec.scale else 0)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=_child_env())
    except subprocess.TimeoutExpired:
        return {"workload": workload, "loop": loop, "error": f"timed out after {timeout:.0f} s"}
    record: Optional[Dict[str, Any]] = None
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            record = json.loads(line)
            break
        except ValueError:
            continue
    if record is None:
        how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited {proc.returncode}")
        record = {"workload": workload, "loop": loop,
                  "error": f"child {how} without a result: {_tail(proc.stderr)}"}
    elif proc.returncode != 0 and "error" not in record:
        record["error"] = f"child exited {proc.returncode}: {_tail(proc.stderr)}"
    if "error" in record and proc.stderr.strip():
        record["stderr"] = _tail(proc.stderr, 20)
    return record


def machine_busy(interval: float = 0.5) -> Optional[float]:
    """Fraction of all CPUs busy over *interval* seconds (None if unknown)."""
    def sample() -> Tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]), idle
    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None


def best_of(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    if any("skipped" in s for s in samples):
        return dict(samples[0])
    good = [s for s in samples if "error" not in s]
    if not good:
        rec = dict(samples[-1])
    else:
        rec = dict(max(good, key=lambda s: s["ops_per_sec"]))
        if len(good) < len(samples):
            rec["failed_samples"] = [s["error"] for s in samples if "error" in s]
    if len(samples) > 1:
        rec["samples"] = [s.get("ops_per_sec") for s in samples]
    return rec


def same_load_rate(results: Dict[str, Dict[str, Any]], fraction: float) -> Optional[float]:
    """The fixed rate of a same-load row: *fraction* of the slowest loop's
    best closed-loop requests/s in this run (a rate every loop sustains, so
    each is compared at the same load), rounded down to two significant
    digits; None unless every loop of the row has a figure."""
    loops = [l for l in LOOP_NAMES if l in results]
    if not loops or any("ops_per_sec" not in results[l] or "error" in results[l]
                        for l in loops):
        return None
    rate = fraction * min(results[l]["ops_per_sec"] for l in loops)
    if rate < 1:
        return None
    step = 10 ** max(0, math.floor(math.log10(rate)) - 1)
    return float(math.floor(rate / step) * step)


def least_p99(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Of the same-load samples of one (row, column), the one with the lowest
    p99 (the least disturbed, as best_of keeps the fastest); every sample's
    p99 goes to "p99_samples"."""
    good = [s for s in samples if "error" not in s and "p99_us" in (s.get("extra") or {})]
    rec = dict(min(good, key=lambda s: s["extra"]["p99_us"]) if good else samples[-1])
    if good and len(good) < len(samples):
        rec["failed_samples"] = [s["error"] for s in samples if "error" in s]
    if len(samples) > 1:
        rec["p99_samples"] = [(s.get("extra") or {}).get("p99_us") for s in samples]
    return rec


def latency_ratio(results: Dict[str, Dict[str, Any]], key: str, a: str,
                  b: str) -> Optional[float]:
    """a's latency percentile *key* divided by b's (below 1: a is faster)."""
    try:
        return results[a]["extra"][key] / results[b]["extra"][key]
    except (KeyError, TypeError, ZeroDivisionError):
        return None


#: a measurement whose processes waited for a CPU longer than this fraction
#: of the time is flagged as disturbed by other load on the machine
CONTENTION_LIMIT = 0.05


def cpu_wait(rec: Dict[str, Any]) -> Optional[float]:
    """Largest run-queue wait fraction recorded for a measurement."""
    extra = rec.get("extra") or {}
    # a busy row keeps the load generator's CPU busy on purpose
    keys = ("cpu_wait", "server_wait") if extra.get("busy") else (
        "cpu_wait", "server_wait", "loadgen_wait")
    waits = [extra.get(k) for k in keys]
    waits = [w for w in waits if isinstance(w, (int, float))]
    return max(waits) if waits else None


def fmt_ops(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:,.0f}"


def fmt_ratio(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def ratio(results: Dict[str, Dict[str, Any]], a: str, b: str) -> Optional[float]:
    ra, rb = results.get(a), results.get(b)
    if not ra or not rb or "ops_per_sec" not in ra or "ops_per_sec" not in rb:
        return None
    if "error" in ra or "error" in rb:
        return None
    if not rb.get("ops_per_sec"):
        return None
    return ra["ops_per_sec"] / rb["ops_per_sec"]


def geomean(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


RATIO_PAIRS = [(OURS, BASELINE), (OURS, RIVAL), (OURS, FLOOR), (RIVAL, BASELINE)]


def build_same_load(fraction: float, rates: Dict[str, Optional[float]],
                    results: Dict[str, Dict[str, Dict[str, Any]]]) -> Dict[str, Any]:
    """The "same_load" part of the report: per row its rate, the chosen
    sample per column and the ours/uvloop, ours/asyncio ratios of latency and
    of server CPU per message (at a fixed rate a loop that costs more per
    message waits longer in its queue)."""
    rows: Dict[str, Any] = {}
    for w, rate in rates.items():
        per = results.get(w, {})
        ratios = {f"{key} {a}/{b}": latency_ratio(per, key, a, b)
                  for a, b in ((OURS, RIVAL), (OURS, BASELINE)) if a in per and b in per
                  for key in ("p50_us", "p99_us", "server_cpu_us_per_msg")}
        rows[w] = {"rate": rate, "results": per, "ratios": ratios}
    return {"fraction": fraction, "basis": "slowest loop's closed-loop requests/s",
            "workloads": rows}


def build_report(args: argparse.Namespace, workloads: List[str], loops: List[str],
                 loop_info: Dict[str, Dict[str, Any]],
                 results: Dict[str, Dict[str, Dict[str, Any]]], wall: float,
                 same_load: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    ratios: Dict[str, Dict[str, Optional[float]]] = {}
    for w in workloads:
        ratios[w] = {f"{a}/{b}": ratio(results[w], a, b) for a, b in RATIO_PAIRS
                     if a in loops and b in loops}
    keys = sorted({k for r in ratios.values() for k in r})
    gm = {k: geomean([ratios[w].get(k) for w in workloads]) for k in keys}
    return {
        "schema": 1,
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "duration": args.duration,
            "warmup": args.warmup,
            "connections": args.connections,
            "pinned": args.pin,
            "quick": args.quick,
            "wall_seconds": round(wall, 1),
        },
        "loops": loop_info,
        "workloads": {w: {"kind": WORKLOADS[w].kind, "unit": WORKLOADS[w].unit,
                          "description": WORKLOADS[w].description} for w in workloads},
        "results": results,
        "ratios": ratios,
        "geomean": gm,
        # absent when the same-load table did not run (--same-load 0, --quick)
        **({"same_load": same_load} if same_load else {}),
    }


COLUMN_TITLES = {"asyncio": "asyncio", "uvloop": "uvloop", OURS: "ours", FLOOR: "floor",
                 C_CASYNCIO: "C/casyncio", C_EPOLL: "C/epoll"}
RATIO_TITLES = {f"{OURS}/{BASELINE}": "ours/asyncio", f"{OURS}/{RIVAL}": "ours/uvloop",
                f"{OURS}/{FLOOR}": "ours/floor", f"{RIVAL}/{BASELINE}": "(uvloop/asyncio)"}


def _print_rows(header: List[str], rows: List[List[str]], out: Any,
                footer: Optional[List[str]] = None) -> None:
    every = rows + [header] + ([footer] if footer else [])
    widths = [max(len(r[i]) for r in every) for i in range(len(header))]

    def line(cells: List[str]) -> str:
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                         for i, c in enumerate(cells))

    print(line(header), file=out)
    print(line(["-" * w for w in widths]), file=out)
    for r in rows:
        print(line(r), file=out)
    if footer:
        print(line(["-" * w for w in widths]), file=out)
        print(line(footer), file=out)


def _cell(report: Dict[str, Any], w: str, l: str, fmt: Any) -> str:
    """One table cell: fmt(record) for a measurement, else n/a / ERROR / -."""
    r = report["results"][w].get(l)
    if not report["loops"][l]["available"]:
        return "n/a"
    if r is None or "skipped" in r:
        return "-"
    if "error" in r:
        return "ERROR"
    return fmt(r)


def _extra(key: str, spec: str) -> Any:
    def fmt(r: Dict[str, Any]) -> str:
        v = (r.get("extra") or {}).get(key)
        return "-" if v is None else format(v, spec)
    return fmt


def _latency(r: Dict[str, Any]) -> str:
    e = r.get("extra") or {}
    if e.get("p50_us") is None:
        return "-"
    return f"{e['p50_us']:.0f}/{e['p99_us']:.0f}"


def _cpu_ratio(report: Dict[str, Any], w: str, a: str, b: str) -> Optional[float]:
    """CPU per message of b divided by a's (above 1: a is cheaper)."""
    ra, rb = report["results"][w].get(a), report["results"][w].get(b)
    try:
        return rb["extra"]["server_cpu_us_per_msg"] / ra["extra"]["server_cpu_us_per_msg"]
    except (TypeError, KeyError, ZeroDivisionError):
        return None


def _same_load_cell(report: Dict[str, Any], rate: Optional[float],
                    r: Optional[Dict[str, Any]], l: str) -> str:
    if not report["loops"][l]["available"]:
        return "n/a"
    if rate is None or r is None or "skipped" in r:
        return "-"
    if "error" in r:
        return "ERROR"
    e = r.get("extra") or {}
    if e.get("p99_us") is None:
        return "-"
    marks = ("!" if e.get("achieved_rate", rate) < SAME_LOAD_KEPT_UP * rate else "") + (
        "*" if (cpu_wait(r) or 0) > CONTENTION_LIMIT else "")
    return f"{e['p50_us']:.0f}/{e['p99_us']:.0f}{marks}"


def print_same_load(report: Dict[str, Any], loops: List[str], out: Any) -> None:
    """Round trips of the same-load rows, every column at one fixed rate."""
    same = report["same_load"]
    cols = [l for l in loops if l in SAME_LOAD_COLUMNS]
    keys = [k for k in (f"p50_us {OURS}/{RIVAL}", f"p99_us {OURS}/{RIVAL}",
                        f"server_cpu_us_per_msg {OURS}/{RIVAL}")
            if any(k in row["ratios"] for row in same["workloads"].values())]
    titles = {k: k.replace("server_cpu_us_per_msg", "CPU/msg").replace("_us", "")
              .replace(OURS, "ours").replace(RIVAL, "uvloop") for k in keys}
    print(f"\nRound trip p50/p99 at the same load, microseconds: open loop at one fixed "
          f"rate per row, {same['fraction']:.0%} of the slowest loop's throughput above "
          "(latency from the scheduled send; ratios below 1.00x: ours is faster, "
          "or for CPU/msg, cheaper; !: the rate was not kept up)", file=out)
    rows = []
    for w, row in same["workloads"].items():
        rate = row["rate"]
        rows.append([w, "-" if rate is None else fmt_ops(rate)]
                    + [_same_load_cell(report, rate, row["results"].get(l), l) for l in cols]
                    + [fmt_ratio(row["ratios"].get(k)) for k in keys])
    _print_rows(["workload", "req/s"] + [COLUMN_TITLES[l] for l in cols]
                + [titles[k] for k in keys], rows, out)
    lags = [r["extra"]["send_lag_p99_us"] for row in same["workloads"].values()
            for r in row["results"].values() if (r.get("extra") or {}).get("send_lag_p99_us")]
    if lags:
        print(f"  the load generator's own send lag, p99: {min(lags):.0f}-{max(lags):.0f} us "
              "(included in the figures above: latencies near it are the machine's, "
              "not the loop's)", file=out)


def print_table(report: Dict[str, Any], loops: List[str], out: Any = sys.stdout) -> None:
    """The throughput table, then, for the network rows, the server's CPU
    and page faults per message, the round-trip latencies and (scale rows)
    memory per connection."""
    workloads = list(report["workloads"])
    ratio_keys = [f"{a}/{b}" for a, b in RATIO_PAIRS if a in loops and b in loops]

    def ops(r: Dict[str, Any]) -> str:
        wait = cpu_wait(r)
        return fmt_ops(r["ops_per_sec"]) + ("*" if wait is not None and wait > CONTENTION_LIMIT
                                            else "")

    header = ["workload"] + [COLUMN_TITLES[l] for l in loops] + [RATIO_TITLES[k]
                                                               for k in ratio_keys]
    rows = [[w] + [_cell(report, w, l, ops) for l in loops]
            + [fmt_ratio(report["ratios"][w].get(k)) for k in ratio_keys] for w in workloads]
    footer = ["geomean"] + [""] * len(loops) + [fmt_ratio(report["geomean"].get(k))
                                                for k in ratio_keys]
    meta = report["meta"]
    print(f"py_async_lib throughput benchmark -- Python {meta['python']}, "
          f"{meta['cpu_count']} CPUs, {meta['duration']} s per measurement"
          f"{' (quick)' if meta['quick'] else ''}; operations per second", file=out)
    _print_rows(header, rows, out, footer)

    net = [w for w in workloads if report["workloads"][w]["kind"] == "net"]
    if net:
        cpu_pairs = [(a, b) for a, b in ((OURS, RIVAL), (OURS, FLOOR), (C_CASYNCIO, C_EPOLL))
                     if a in loops and b in loops]
        titles = {(OURS, RIVAL): "uvloop/ours", (OURS, FLOOR): "floor/ours",
                  (C_CASYNCIO, C_EPOLL): "epoll/casyncio"}
        print("\nServer CPU per message, microseconds (lower is better; ratios above "
              "1.00x: the second named costs more)", file=out)
        _print_rows(["workload"] + [COLUMN_TITLES[l] for l in loops]
                    + [titles[p] for p in cpu_pairs],
                    [[w] + [_cell(report, w, l, _extra("server_cpu_us_per_msg", ".2f"))
                            for l in loops]
                     + [fmt_ratio(_cpu_ratio(report, w, a, b)) for a, b in cpu_pairs]
                     for w in net], out)
        print("\nRound trip p50/p99, microseconds (load generator)", file=out)
        _print_rows(["workload"] + [COLUMN_TITLES[l] for l in loops],
                    [[w] + [_cell(report, w, l, _latency) for l in loops] for w in net], out)
        if report.get("same_load"):
            print_same_load(report, loops, out)
        print("\nServer minor page faults per message", file=out)
        _print_rows(["workload"] + [COLUMN_TITLES[l] for l in loops],
                    [[w] + [_cell(report, w, l, _extra("server_minflt_per_msg", ".2f"))
                            for l in loops] for w in net], out)
    scale = [w for w in net if any("mem_per_conn_kb" in (r.get("extra") or {})
                                   for r in report["results"][w].values())]
    for w in scale:
        n = next((r["extra"]["connections"] for r in report["results"][w].values()
                  if "extra" in r), "?")
        print(f"\n{w}: {n} idle connections; server memory per connection (KiB) and "
              "best/median time to serve one message on each (ms)", file=out)
        _print_rows(["", *[COLUMN_TITLES[l] for l in loops]],
                    [["KiB/conn"] + [_cell(report, w, l, _extra("mem_per_conn_kb", ".2f"))
                                     for l in loops],
                     ["sweep ms"] + [_cell(report, w, l, lambda r: (
                         f"{r['extra']['sweep_ms_best']:.1f}/"
                         f"{r['extra']['sweep_ms_median']:.1f}")) for l in loops]], out)

    notes = []
    # (row, column, record, how it ran) of every measurement
    measured = [(w, l, r, "") for w in workloads for l, r in report["results"][w].items()]
    measured += [(w, l, r, " at the same load")
                 for w, row in report.get("same_load", {}).get("workloads", {}).items()
                 for l, r in row["results"].items()]
    disturbed = [(w, l, cpu_wait(r)) for w, l, r, _ in measured
                 if "error" not in r and "skipped" not in r
                 and (cpu_wait(r) or 0) > CONTENTION_LIMIT]
    if disturbed:
        worst = max(d[2] for d in disturbed)
        notes.append(f"* {len(disturbed)} measurement(s) waited for a CPU more than "
                     f"{CONTENTION_LIMIT:.0%} of the time (worst {worst:.0%}): other load on "
                     "the machine; treat them as noise and re-run on an idle machine")
    for l in loops:
        info = report["loops"][l]
        if not info["available"]:
            hint = (f"; build it for this Python: make ffi PYTHON={sys.executable}"
                    if l == OURS else "")
            notes.append(f"{l}: not measured ({info['info']}){hint}")
        else:
            notes.append(f"{l}: {info['info']}")
    for w, l, r, how in measured:
        if not r or "skipped" in r or l not in loops:
            continue
        if "error" in r:
            notes.append(f"ERROR {w} on {l}{how}: {r['error']}")
        elif r.get("extra", {}).get("loadgen_cpu", 0) >= LOADGEN_SATURATED:
            notes.append(f"{w} on {l}{how}: load generator used "
                         f"{r['extra']['loadgen_cpu']:.2f} CPU; the number may be capped by it")
    if notes:
        print("", file=out)
        for n in notes:
            print(f"  {n}", file=out)


def write_plot(report: Dict[str, Any], loops: List[str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    measured = [l for l in loops if report["loops"][l]["available"]
                and any(l in results[w] and "error" not in results[w][l] for w in results)]
    workloads = [w for w in report["workloads"]
                 if any(l in results[w] and "error" not in results[w][l] for l in measured)]
    meta = report["meta"]
    footer = (f"Python {meta['python']} on {meta['machine']}, {meta['cpu_count']} CPUs, "
              f"{meta['duration']} s per measurement{' (quick)' if meta['quick'] else ''}, "
              f"{meta['date']}")
    colors = {"asyncio": "#9e9e9e", "uvloop": "#ff9800", "py_async_lib": "#1f77b4",
              FLOOR: "#2ca02c", C_CASYNCIO: "#d62728", C_EPOLL: "#9467bd"}

    if len(measured) < 2:
        # nothing to compare: absolute throughput
        fig, ax = plt.subplots(figsize=(max(8, 0.8 * len(workloads) + 3), 5))
        vals = [results[w][measured[0]]["ops_per_sec"] if measured else 0 for w in workloads]
        bars = ax.bar(range(len(workloads)), vals,
                      color=colors.get(measured[0] if measured else "", "C0"),
                      edgecolor="black", linewidth=0.4)
        for bar, v in zip(bars, vals):
            ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7.5)
        ax.set_yscale("log")
        positive = [v for v in vals if v > 0]
        if positive:  # whole decades, so bar heights compare honestly
            ax.set_ylim(10 ** math.floor(math.log10(min(positive))),
                        10 ** math.ceil(math.log10(max(positive) * 1.5)))
        ax.set_ylabel("operations per second (log scale)")
        ax.set_title(f"Throughput of {measured[0] if measured else 'nothing'}")
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads, rotation=30, ha="right")
        fig.text(0.01, 0.01, footer, fontsize=8, color="#555555")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return

    base = BASELINE if BASELINE in measured else measured[0]
    others = [l for l in measured if l != base]
    panels: List[Tuple[str, List[Tuple[str, str]]]] = [
        (f"Throughput relative to {base} (higher is better; {base} = 1.0)",
         [(l, base) for l in others])]
    second = [(OURS, ref) for ref in (RIVAL, FLOOR) if OURS in measured and ref in measured
              and ref != base]
    if second:
        panels.append((f"{OURS} relative to " + " and to ".join(r for _, r in second)
                       + f" (above 1.0: {OURS} is faster)", second))

    def disturbed(rec: Optional[Dict[str, Any]]) -> bool:
        return bool(rec) and (cpu_wait(rec) or 0) > CONTENTION_LIMIT

    any_disturbed = False
    groups = workloads + ["geomean"]
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(max(10, 0.95 * len(groups) + 3), 4.6 * len(panels)))
    for ax, (title, pairs) in zip(axes[:, 0], panels):
        width = 0.8 / len(pairs)
        ymax = 1.0
        for i, (a, b) in enumerate(pairs):
            vals = [ratio(results[w], a, b) for w in workloads]
            vals.append(geomean(vals))
            xs = [g + (i - (len(pairs) - 1) / 2) * width for g in range(len(groups))]
            heights = [v if v is not None else 0 for v in vals]
            label = f"{a} / {b}"
            bars = ax.bar(xs, heights, width * 0.92, label=label,
                          # one numerator for every pair: colour by the denominator
                          color=colors.get(b if len({x for x, _ in pairs}) == 1
                                           and len(pairs) > 1 else a, f"C{i}"),
                          edgecolor="black", linewidth=0.4)
            pair_disturbed = False
            for bar, w in zip(bars, workloads):
                if disturbed(results[w].get(a)) or disturbed(results[w].get(b)):
                    bar.set_hatch("///")
                    bar.set_alpha(0.55)
                    pair_disturbed = any_disturbed = True
            if pair_disturbed:  # the geomean bar inherits the doubt
                bars[-1].set_hatch("///")
                bars[-1].set_alpha(0.55)
            for bar, v in zip(bars, vals):
                ax.annotate("n/a" if v is None else f"{v:.2f}",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7.5)
            ymax = max([ymax] + [v for v in vals if v is not None])
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.axvline(len(workloads) - 0.5, color="#bbbbbb", linewidth=0.8)
        ax.set_ylim(0, ymax * 1.3)  # headroom for the value labels and the legend
        ax.set_ylabel("ratio of operations/s")
        ax.set_title(title, fontsize=11)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(loc="upper center", ncol=len(pairs), fontsize=9, framealpha=0.95)
    fig.suptitle("py_async_lib event loop benchmark", fontsize=13)
    if any_disturbed:
        footer += (f"\nhatched bars: a measurement waited for a CPU > "
                   f"{CONTENTION_LIMIT:.0%} of the time (other load on the machine), "
                   "treat as noise")
    fig.text(0.01, 0.005, footer, fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.05 if any_disturbed else 0.025, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description="Operations per second of asyncio, uvloop and py_async_lib event loops "
                    "on a set of workloads, each (workload, loop) in a fresh subprocess.",
        epilog="Workloads: " + ", ".join(WORKLOADS) + ".  See --list and the module "
               "docstring (benchmarks/throughput.py) for what each one measures.")
    p.add_argument("--quick", action="store_true",
                   help=f"short runs for a CI smoke test ({QUICK_DURATION} s per measurement, "
                        f"{QUICK_WARMUP} s warm-up)")
    p.add_argument("--duration", type=float, default=None, metavar="SEC",
                   help=f"measured seconds per (workload, loop) (default {DEFAULT_DURATION})")
    p.add_argument("--warmup", type=float, default=None, metavar="SEC",
                   help=f"warm-up seconds before each measurement (default {DEFAULT_WARMUP})")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help="run only these workloads (comma-separated)")
    p.add_argument("--loops", metavar="LOOP[,LOOP]",
                   help=f"loops and references to compare (default: {','.join(COLUMNS)}; "
                        "unavailable "
                        "ones are reported and skipped)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="machine-readable results: `--json` alone prints JSON to stdout "
                        "instead of the table; `--json FILE` writes it to FILE and still "
                        "prints the table")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write a bar chart of the ratios per workload (needs matplotlib)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="measure each (workload, loop) N times, interleaving the loops, and "
                        "keep the best (all samples go to the JSON); helps on a noisy machine")
    p.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS, metavar="N",
                   help="load generator connections for network workloads "
                        f"(default {DEFAULT_CONNECTIONS})")
    p.add_argument("--scale-connections", type=int, default=None, metavar="N",
                   help=f"idle connections of the idle_10k row (default {SCALE_CONNECTIONS}, "
                        f"{QUICK_SCALE_CONNECTIONS} with --quick; capped by ulimit -n)")
    p.add_argument("--python", metavar="PATH[,PATH]",
                   help="run the whole benchmark once per interpreter (each needs uvloop, "
                        "cffi and py_async_lib's cffi module built for it: "
                        "make ffi PYTHON=PATH) and print each one's tables")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin the loop process and the load generator to separate CPUs")
    p.add_argument("--loadgen", metavar="PATH",
                   help="load generator binary (default: build/loadgen, built on demand)")
    p.add_argument("--same-load", type=float, default=None, metavar="FRACTION",
                   help="latency at the same load: the rows "
                        f"{', '.join(SAME_LOAD_WORKLOADS)} run again open-loop on "
                        f"{', '.join(SAME_LOAD_COLUMNS)} at FRACTION of the slowest loop's "
                        f"requests/s (default {SAME_LOAD_FRACTION}; 0 with --quick; "
                        "0 disables)")
    p.add_argument("--list", action="store_true", help="list workloads and exit")
    p.add_argument("--child", nargs=2, metavar=("WORKLOAD", "LOOP"), help=argparse.SUPPRESS)
    p.add_argument("--probe", metavar="LOOP", help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)  # --child
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = QUICK_DURATION if args.quick else DEFAULT_DURATION
    if args.warmup is None:
        args.warmup = QUICK_WARMUP if args.quick else DEFAULT_WARMUP
    if args.duration <= 0 or args.warmup < 0:
        p.error("--duration must be > 0 and --warmup >= 0")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.same_load is None:
        args.same_load = 0.0 if args.quick else SAME_LOAD_FRACTION
    if not 0 <= args.same_load <= 1:
        p.error("--same-load must be between 0 and 1")
    if args.connections < 1:
        p.error("--connections must be >= 1")
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in WORKLOADS]
        if unknown:
            p.error(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
        args.workloads = [w for w in WORKLOADS if w in names]
    else:
        args.workloads = list(WORKLOADS)
    if args.loops:
        loops = [n.strip() for n in args.loops.split(",") if n.strip()]
        unknown = [n for n in loops if n not in COLUMNS]
        if unknown:
            p.error(f"unknown loop(s): {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
        args.loop_names = [l for l in COLUMNS if l in loops]
    else:
        args.loop_names = list(COLUMNS)
    if args.scale_connections is None:
        args.scale_connections = QUICK_SCALE_CONNECTIONS if args.quick else SCALE_CONNECTIONS
    return args


def _without_python(argv: Sequence[str]) -> List[str]:
    out: List[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--python":
            skip = True
        elif not a.startswith("--python="):
            out.append(a)
    return out


def main_per_python(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """--python: the whole run once per interpreter, one after the other
    (never at the same time: they would share the CPUs).  --json FILE and
    --plot FILE get the interpreter's version in their names."""
    rc = 0
    for exe in [p.strip() for p in args.python.split(",") if p.strip()]:
        try:
            version = subprocess.run([exe, "-c", "import platform; print(platform.python_version())"],
                                     capture_output=True, text=True, timeout=30,
                                     check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"error: cannot run {exe}: {exc}", file=sys.stderr)
            rc = 1
            continue
        cmd = [exe, "-m", "benchmarks.throughput"]
        rest = _without_python(argv)
        for opt in ("--json", "--plot"):
            value = getattr(args, opt[2:])
            if value and value != "-":
                stem, dot, ext = value.rpartition(".")
                named = f"{stem}-py{version}.{ext}" if dot else f"{value}-py{version}"
                rest = [named if a == value else a for a in rest]
        print(f"\n==== Python {version} ({exe}) ====", flush=True)
        rc |= subprocess.run(cmd + rest, env=_child_env()).returncode
    return rc


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.python:
        return main_per_python(args, argv)
    if args.child:
        return child_main(args)
    if args.probe:
        return probe_main(args.probe)
    if args.list:
        for w in WORKLOADS.values():
            print(f"{w.name:<18} [{w.unit}] {w.description}")
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    loops: List[str] = args.loop_names
    loop_info: Dict[str, Dict[str, Any]] = {}
    for name, (ok, info) in probe_loops(loops).items():
        loop_info[name] = {"available": ok, "info": info}
        if not ok:
            log(f"note: skipping {name}: {info}")
    usable = [l for l in loops if loop_info[l]["available"]]

    loadgen: Optional[str] = args.loadgen
    loadgen_error: Optional[str] = None
    if any(WORKLOADS[w].kind == "net" for w in args.workloads) and not loadgen:
        try:
            loadgen = ensure_loadgen(log)
        except RuntimeError as exc:
            loadgen_error = str(exc)
            log(f"note: network workloads will fail: {exc}")

    busy = machine_busy()
    if busy is not None and busy > 0.15:
        log(f"warning: {busy:.0%} of the CPUs are busy with other work before starting; "
            "results will be noisy (consider --repeat 3)")

    samples: Dict[str, Dict[str, List[Dict[str, Any]]]] = {
        w: {l: [] for l in usable} for w in args.workloads}
    same_rows = [w for w in args.workloads if w in SAME_LOAD_WORKLOADS] if args.same_load else []
    same_cols = [l for l in usable if l in SAME_LOAD_COLUMNS]
    same_samples: Dict[str, Dict[str, List[Dict[str, Any]]]] = {
        w: {l: [] for l in same_cols} for w in same_rows}
    rates: Dict[str, Optional[float]] = {}
    total = (len(args.workloads) * len(usable) + len(same_rows) * len(same_cols)) * args.repeat
    i = 0

    def measure(w: str, l: str, rep: int, rate: float = 0.0) -> Dict[str, Any]:
        nonlocal i
        i += 1
        prefix = f"[{i}/{total}] {w} on {l}" + (f" at {fmt_ops(rate)} req/s" if rate else "")
        if args.repeat > 1:
            prefix += f" (run {rep + 1}/{args.repeat})"
        prefix += " ..."
        if sys.stderr.isatty():
            print(prefix, end="", file=sys.stderr, flush=True)
        why = skip_reason(l, WORKLOADS[w]) if l in REFERENCES else None
        if why:
            if sys.stderr.isatty():
                print("", file=sys.stderr, flush=True)
            return {"workload": w, "loop": l, "skipped": why}
        if WORKLOADS[w].kind == "net" and loadgen_error:
            rec = {"workload": w, "loop": l, "error": f"no load generator: {loadgen_error}"}
        else:
            rec = run_child(w, l, args, loadgen, rate)
        outcome = ("ERROR: " + rec["error"].splitlines()[0][:200] if "error" in rec
                   else f"skipped: {rec['skipped']}" if "skipped" in rec
                   else "p50/p99 {p50_us:.0f}/{p99_us:.0f} us".format(**rec["extra"]) if rate
                   else f"{fmt_ops(rec['ops_per_sec'])} ops/s")
        if sys.stderr.isatty():
            print(f" {outcome}", file=sys.stderr, flush=True)
        else:
            log(f"{prefix} {outcome}")
        return rec

    for w in args.workloads:
        for rep in range(args.repeat):
            for l in usable:
                samples[w][l].append(measure(w, l, rep))
        if w not in same_samples:
            continue
        # the same row again, open loop at one rate for every column
        rates[w] = same_load_rate({l: best_of(s) for l, s in samples[w].items()},
                                  args.same_load)
        if rates[w] is None:
            log(f"note: {w}: no same-load rate (a loop has no throughput figure)")
            i += args.repeat * len(same_cols)
            continue
        for rep in range(args.repeat):
            for l in same_cols:
                same_samples[w][l].append(measure(w, l, rep, rates[w]))
    results = {w: {l: best_of(s) for l, s in per.items()} for w, per in samples.items()}
    same_results = {w: {l: least_p99(s) for l, s in per.items() if s}
                    for w, per in same_samples.items()}

    report = build_report(args, args.workloads, loops, loop_info, results,
                          time.perf_counter() - started,
                          build_same_load(args.same_load, rates, same_results)
                          if same_rows else None)
    report["meta"]["repeat"] = args.repeat
    report["meta"]["cpu_busy_before"] = None if busy is None else round(busy, 3)

    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(report, loops)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            print(f"\nJSON results written to {args.json}")
    if args.plot:
        try:
            write_plot(report, loops, args.plot)
            log(f"plot written to {args.plot}")
        except ImportError as exc:
            log(f"error: --plot needs matplotlib ({exc}); pip install matplotlib")
            return 1
    failed = any("error" in r for every in (results, same_results)
                 for per in every.values() for r in per.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
