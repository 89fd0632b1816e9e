"""Requests per second of examples/multicore_server.py with 1, 2, ... worker
processes (SO_REUSEPORT), driven by the C load generator (build/loadgen,
`make loadgen`) in HTTP keep-alive mode.

    python -m benchmarks.multicore [--workers 1,2] [--duration 5] [--conns 64]

Prints one line per worker count: requests per second and its ratio to one
worker, and requests per CPU-second of the workers together (which stays
flat while the workers share nothing).  The load generator needs CPU too: on
a machine with C cores, workers + loadgen threads above C compete, and
loadgen's "wait" (the fraction of its time spent waiting for a CPU) says how
much.  On a machine that other work keeps busy, more processes also get a
larger share of it; read the throughput ratio with the CPU figure beside it.
"""
import argparse
import json
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADGEN = os.path.join(ROOT, "build", "loadgen")
SERVER = os.path.join(ROOT, "examples", "multicore_server.py")


def cpu_seconds(pids):
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])   # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(workers, args):
    server = subprocess.Popen(
        [sys.executable, SERVER, "--workers", str(workers), "--port", "0"],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": ROOT})
    try:
        _, host, port, pids = server.stdout.readline().split()
        pids = pids.split(",")
        cpu0 = cpu_seconds(pids)
        out = subprocess.run(
            [LOADGEN, "--http", "-H", host, "-p", port, "-c", str(args.conns),
             "-t", str(args.threads), "-w", "0", "-d", str(args.duration)],
            capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        result["server_cpu"] = cpu_seconds(pids) - cpu0
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="1,2")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if not os.path.exists(LOADGEN):
        sys.exit(f"{LOADGEN} is missing: run make loadgen")
    print(f"{os.cpu_count()} CPUs, {args.conns} connections, "
          f"{args.threads} loadgen thread(s), {args.duration} s")
    base = None
    for n in [int(w) for w in args.workers.split(",")]:
        r = measure(n, args)
        rate = r["requests"] / r["seconds"]
        base = base or rate
        per_cpu = r["requests"] / r["server_cpu"]
        print(f"workers={n}: {rate:9.0f} req/s  {rate / base:5.2f}x  "
              f"{per_cpu:9.0f} req per worker CPU-second  "
              f"(loadgen wait {r['wait']:.2f}, errors {r['errors']})")


if __name__ == "__main__":
    main()
