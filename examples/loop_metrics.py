"""loop.stats() as a Prometheus text endpoint served by the loop itself.

    python examples/loop_metrics.py          # then: curl 127.0.0.1:9464/metrics

serve_metrics() starts a tiny HTTP server on the running py_async_lib loop
that answers every request with the loop's counters, gauges and its lag
histogram (the batch durations) in Prometheus' text format.  Reading the
stats is one call into C, so scraping it often costs nothing measurable.
"""
import asyncio

from py_async_lib.health import HISTOGRAM_BOUNDS

COUNTERS = ("iterations", "io_events", "timers_fired", "events_emitted",
            "bytes_read", "bytes_written", "slow_iterations")


def prometheus_text(stats, prefix="py_async_lib"):
    lines = []
    for name in COUNTERS:
        lines += [f"# TYPE {prefix}_{name}_total counter",
                  f"{prefix}_{name}_total {stats[name]}"]
    for name in ("poll", "batch"):
        lines += [f"# TYPE {prefix}_{name}_seconds_total counter",
                  f"{prefix}_{name}_seconds_total {stats[name + '_ns'] / 1e9}"]
    for name in ("fds", "timers"):
        lines += [f"# TYPE {prefix}_{name} gauge", f"{prefix}_{name} {stats[name]}"]
    lines += [f"# TYPE {prefix}_batch_max_seconds gauge",
              f"{prefix}_batch_max_seconds {stats['batch_max_ns'] / 1e9}"]
    # The loop's lag: time from a poll's return to the next poll.
    hist = f"{prefix}_batch_seconds"
    lines.append(f"# TYPE {hist} histogram")
    total = 0
    for bound, count in zip(HISTOGRAM_BOUNDS, stats["batch_hist"]):
        total += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'{hist}_bucket{{le="{le}"}} {total}')
    lines += [f"{hist}_sum {stats['batch_ns'] / 1e9}", f"{hist}_count {total}"]
    return "\n".join(lines) + "\n"


async def serve_metrics(host="127.0.0.1", port=9464):
    loop = asyncio.get_running_loop()

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        body = prometheus_text(loop.stats()).encode()
        writer.write(b"HTTP/1.1 200 OK\r\n"
                     b"Content-Type: text/plain; version=0.0.4\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                     + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, host, port)


if __name__ == "__main__":
    import py_async_lib

    async def main():
        server = await serve_metrics()
        print("serving http://127.0.0.1:9464/metrics")
        await server.serve_forever()

    py_async_lib.run(main())
