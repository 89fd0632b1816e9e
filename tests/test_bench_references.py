"""The benchmark references do the work they stand for: the floor loop runs
every loop-level workload with asyncio's order and contexts, the floor
server and the C servers echo, the load generator reports latencies (closed
and open loop) and scale sweeps, and the harness prints and records the
same-load latency table.  (Correctness only; speed is the benchmark's
business.)"""
import contextvars
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from benchmarks import workloads
from benchmarks.floor import FloorLoop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADGEN = os.path.join(ROOT, "build", "loadgen")
EPOLL_ECHO = os.path.join(ROOT, "build", "epoll_echo")
ECHO_SERVER = os.path.join(ROOT, "build", "echo_server")


@pytest.fixture
def floor_loop():
    loop = FloorLoop()
    yield loop
    loop.close()


@pytest.mark.parametrize("fn,kwargs,expected", [
    (workloads.call_soon_chain_round, {"n": 1000}, 1000),
    (workloads.call_soon_burst_round, {"n": 1000}, 1000),
    (workloads.call_later_timers_round, {"n": 1000}, 1000),
    (workloads.tasks_sleep0_round, {"ntasks": 100, "nsleeps": 3}, 300),
    (workloads.future_pingpong_round, {"n": 100}, 200),
    (workloads.call_soon_threadsafe_round, {"n": 2000, "nthreads": 2}, 2000),
])
def test_floor_loop_runs_the_loop_workloads(floor_loop, fn, kwargs, expected):
    assert fn(floor_loop, **kwargs) == expected


def test_floor_loop_order_and_contexts(floor_loop):
    var = contextvars.ContextVar("var", default="outer")
    seen = []

    def record(tag):
        seen.append((tag, var.get()))
        var.set("changed")          # in the callback's own copy only

    ctx = contextvars.copy_context()
    ctx.run(var.set, "given")
    floor_loop.call_later(0.002, record, "late")
    floor_loop.call_later(0.001, record, "early")
    floor_loop.call_soon(record, "first")
    floor_loop.call_soon(record, "second", context=ctx)
    floor_loop.call_soon(record, "cancelled").cancel()
    floor_loop.run_until_complete(floor_loop.create_task(_sleep(0.01)))
    assert seen == [("first", "outer"), ("second", "given"),
                    ("early", "outer"), ("late", "outer")]
    assert var.get() == "outer"


async def _sleep(delay):
    import asyncio
    await asyncio.sleep(delay)


def _start(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": ROOT})
    words = proc.stdout.readline().split()
    assert words[:1] == ["listening"], proc.stderr.read()
    return proc, (words[1], int(words[2]))


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize("api", ["protocol", "streams", "sock"])
def test_floor_server_echoes(api):
    """Each floor echoes on several connections at once, a payload larger
    than the write limits sent while it is read back (flow control both
    ways), and the streams and sock_* servers close after the peer's EOF."""
    pytest.importorskip("py_async_lib._casyncio")
    proc, address = _start([sys.executable, "-m", "benchmarks.floor_server",
                            "--api", api])
    try:
        conns = [socket.create_connection(address, timeout=10) for _ in range(3)]
        for payload in (b"hello", b"x" * 100_000, bytes(range(256)) * 20_000):
            for c in conns:
                sender = threading.Thread(target=c.sendall, args=(payload,))
                sender.start()
                got = bytearray()
                while len(got) < len(payload):
                    chunk = c.recv(1 << 20)
                    assert chunk
                    got += chunk
                sender.join()
                assert got == payload
        for c in conns:
            if api != "protocol":   # EchoProtocol keeps a half-closed peer
                c.shutdown(socket.SHUT_WR)
                assert c.recv(1) == b""
            c.close()
    finally:
        _stop(proc)


def _loadgen(*args):
    out = subprocess.run([LOADGEN, *args], capture_output=True, text=True,
                         input="go\n", timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.skipif(not all(os.access(p, os.X_OK) for p in (LOADGEN, EPOLL_ECHO,
                                                            ECHO_SERVER)),
                    reason="make loadgen examples first")
@pytest.mark.parametrize("server", [EPOLL_ECHO, ECHO_SERVER])
def test_loadgen_reports_latency_and_scale_sweeps(server):
    proc, (host, port) = _start([server])
    try:
        (rep,) = _loadgen("-H", host, "-p", str(port), "-c", "4", "-d", "0.2",
                          "-w", "0.1", "--verify")
        assert rep["errors"] == 0 and rep["requests"] > 0
        assert rep["all_requests"] >= rep["requests"] + rep["warmup_requests"]
        assert 0 < rep["p50_us"] <= rep["p99_us"]
        ready, rep = _loadgen("-H", host, "-p", str(port), "--scale", "-c", "200",
                              "-s", "512", "-d", "0.1", "--verify")
        assert ready == {"phase": "ready"}
        assert rep["mode"] == "scale" and rep["errors"] == 0
        assert rep["sweeps"] >= 3 and rep["requests"] == 200 * rep["sweeps"]
        assert 0 < rep["sweep_ms_best"] <= rep["sweep_ms_median"]
    finally:
        _stop(proc)


@pytest.mark.skipif(not all(os.access(p, os.X_OK) for p in (LOADGEN, EPOLL_ECHO)),
                    reason="make loadgen first")
@pytest.mark.parametrize("mode", ["echo", "http"])
def test_loadgen_open_loop_reports_its_rate(mode):
    """--rate: the report carries the target and achieved rates and the
    percentiles in order (their values are the benchmark's business)."""
    proc, (host, port) = _start([EPOLL_ECHO] + (["--http"] if mode == "http" else []))
    try:
        args = ["-H", host, "-p", str(port), "-c", "4", "-d", "0.2", "-w", "0.1",
                "--rate", "2000"] + (["--http"] if mode == "http" else ["--verify"])
        (rep,) = _loadgen(*args)
        assert rep["mode"] == mode and rep["errors"] == 0 and rep["requests"] > 0
        assert rep["rate"] == 2000.0 and rep["achieved_rate"] > 0
        assert rep["send_lag_p99_us"] >= 0
        assert 0 < rep["p50_us"] <= rep["p99_us"] <= rep["p999_us"]
        bad = subprocess.run([LOADGEN, "-H", host, "-p", str(port), "--rate", "0"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "bad value" in bad.stderr
    finally:
        _stop(proc)


def _net_record(loop, p50, p99, rate=None, achieved=None):
    extra = {"p50_us": p50, "p99_us": p99, "p999_us": p99 * 2, "server_wait": 0.0,
             "loadgen_wait": 0.0, "loadgen_cpu": 0.3, "server_cpu_us_per_msg": 5.0}
    if rate:
        extra.update(rate=rate, achieved_rate=achieved, send_lag_p99_us=p50 / 10)
    return {"workload": "echo_protocol_1k", "loop": loop, "ops": 1000, "seconds": 1.0,
            "ops_per_sec": 1000.0, "extra": extra}


def test_same_load_table_is_printed_and_recorded():
    """The rate is a fraction of the slowest loop's throughput, rounded down;
    the table prints p50/p99 per column and ours/uvloop (latency, CPU per
    message); ! marks a rate not
    kept up; the JSON carries it all; --quick leaves it out."""
    import io
    from benchmarks import throughput as t

    closed = {"asyncio": dict(_net_record("asyncio", 90, 300), ops_per_sec=23_456.0),
              "uvloop": dict(_net_record("uvloop", 60, 200), ops_per_sec=40_000.0),
              "py_async_lib": dict(_net_record("py_async_lib", 70, 250), ops_per_sec=30_000.0)}
    rate = t.same_load_rate(closed, 0.5)
    assert rate == 11_000.0
    assert t.same_load_rate({**closed, "uvloop": {"error": "boom"}}, 0.5) is None
    same = {"asyncio": _net_record("asyncio", 50, 400, rate, rate),
            "uvloop": _net_record("uvloop", 40, 200, rate, rate),
            "py_async_lib": _net_record("py_async_lib", 30, 100, rate, rate * 0.5),
            "c_epoll": _net_record("c_epoll", 20, 50, rate, rate)}
    assert t.least_p99([same["asyncio"], same["uvloop"]])["extra"]["p99_us"] == 200
    args = t.parse_args(["--only", "echo_protocol_1k"])
    assert args.same_load == t.SAME_LOAD_FRACTION
    assert t.parse_args(["--quick"]).same_load == 0
    loops = ["asyncio", "uvloop", "py_async_lib", "c_epoll"]
    info = {l: {"available": True, "info": l} for l in loops}
    report = t.build_report(args, ["echo_protocol_1k"], loops, info,
                            {"echo_protocol_1k": {**closed, "c_epoll": closed["uvloop"]}},
                            1.0, t.build_same_load(0.5, {"echo_protocol_1k": rate},
                                                   {"echo_protocol_1k": same}))
    row = json.loads(json.dumps(report))["same_load"]["workloads"]["echo_protocol_1k"]
    assert row["rate"] == rate and row["results"]["uvloop"]["extra"]["p99_us"] == 200
    assert row["ratios"]["p99_us py_async_lib/uvloop"] == 0.5
    out = io.StringIO()
    t.print_table(report, loops, out)
    lines = out.getvalue().splitlines()
    start = next(i for i, l in enumerate(lines) if "at the same load" in l)
    line = next(l for l in lines[start:] if l.startswith("echo_protocol_1k"))
    assert line.split() == ["echo_protocol_1k", "11,000", "50/400", "40/200", "30/100!",
                            "20/50", "0.75x", "0.50x", "1.00x"]
    assert "send lag, p99: 2-5 us" in lines[lines.index(line) + 1]
