"""CPython's whole test.test_asyncio package, of the running interpreter,
with every event loop it creates through asyncio replaced by ours.

    python tests/cpython/whole_suite.py [-j N] [MODULE...]

Every test_* module of the package runs in a process of its own (as
CPython's regrtest runs them), N at a time (default: the CPU count); each
writes its unittest log to build/cpython-suite/<python>/<module>.log.  The
summary gives per module the tests run, passed, failed (failures, errors
and unexpected successes), skipped and expected failures, and the loops
the module created (ours / explicit selector loops / mock-clock and other
test loops).  The exit status is 1 if a test failed or a module crashed or
timed out.

What is replaced (our_loop.py): the class of asyncio's default policy,
which asyncio.new_event_loop(), asyncio.run(), asyncio.Runner,
IsolatedAsyncioTestCase and a policy reset to None all go through, and
asyncio.EventLoop (3.13+), the default loop class that tests pass as
loop_factory.  Tests that construct asyncio.SelectorEventLoop (or
test_utils.TestLoop, the mock-clock loop) explicitly test those classes and
keep them; their loop-parametrised classes also run on our loop, as
PyAsyncLibTests in their module (OUR_LOOP_CLASSES).  The tests skipped on
our loop, each with its reason: SKIPS.
"""
import argparse
import concurrent.futures
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MARK = "WHOLE-SUITE-RESULT "
MODULE_TIMEOUT = 400  # seconds; a module that takes longer is reported hung

# The one list of tests skipped on our loop: tests that check something
# only asyncio's selector loop (its selector, its child watcher, its
# transports' Python-level socket calls) can have.  Each entry: the test id
# (relative to test.test_asyncio; a trailing ".*" matches a whole class),
# the Python versions it applies to (None: every version that has the test;
# patch releases add tests), and the precise reason.  Entries that match no
# test of the running Python are listed in the summary.
_SELECTOR_KEY = (
    "looks the socket up in loop._selector, the selectors.BaseSelector of "
    "asyncio's selector loop; our loop registers fds with its C engine and has "
    "no selector. The behaviour checked (sock_sendfile leaves no writer after "
    "it is cancelled or fails) is tested on both loops in "
    "tests/test_transports.py::test_sock_sendfile_*_leaves_no_writer")
_WATCHER = (
    "reads loop._watcher, the child watcher object (_PidfdChildWatcher or "
    "_ThreadedChildWatcher) inside asyncio 3.14's selector loop; our loop has "
    "none: its C engine waits for children on pidfds (tests/c/test_process.c, "
    "tests/test_subprocess.py)")
SKIPS = [
    ("test_unix_events.SelectorEventLoopUnixSockSendfileTests."
     "test_sock_sendfile_" + name, None, _SELECTOR_KEY)
    for name in ("blocking_error", "cancel1", "cancel2", "exception",
                 "os_error_first_call", "os_error_next_call")
] + [
    ("test_subprocess.SubprocessPidfdWatcherTests.test_watcher_implementation",
     None, _WATCHER),
    ("test_subprocess.SubprocessThreadedWatcherTests."
     "test_watcher_implementation", None, _WATCHER),
    ("test_subprocess.SubprocessThreadedWatcherTests."
     "test_pid_not_reaped_before_exit_published", None, _WATCHER),
    ("test_unix_events.PidfdChildWatcherTests."
     "test_pidfd_closed_when_waitpid_raises", None,
     "makes os.waitpid() raise and waits until asyncio's _PidfdChildWatcher "
     "has called it; our loop reaps children in C (waitid() on the pidfd) and "
     "never calls os.waitpid(), so the test would wait forever"),
    ("test_runners.RunTests.test_loop_factory_default_event_loop", None,
     "asserts that asyncio.EventLoop is asyncio.SelectorEventLoop, which is "
     "the one thing this run changes (asyncio.EventLoop is our loop here)"),
    ("test_ssl.TestSSL."
     "test_remote_shutdown_receives_trailing_data_on_slow_socket", None,
     "wraps the _sock of asyncio's _SelectorSocketTransport and reads its "
     "_read_ready_cb to force that transport's delayed-write path "
     "(gh-115514); our transport has neither (it writes through the C "
     "engine, not sock.send()), and the test then waits forever"),
    ("test_sslproto.SslProtoHandshakeTests.test_connection_lost_when_busy",
     None,
     "makes a socket transport over a mock socket (fileno() 12345, send() "
     "raising BrokenPipeError); our transports hand the fd to the C engine, "
     "which refuses a descriptor that does not exist, and never call "
     "sock.send()"),
]

# CPython's loop-parametrised test classes, which their modules instantiate
# for asyncio's selector loops only (SelectorEventLoop(EpollSelector())...):
# per module, the bases of a class that runs them on our loop, and the
# method that makes its loop.  "A|B": A where the module has it, else B
# (3.14 dropped the child-watcher mixin UnixEventLoopTestsMixin).
OUR_LOOP_CLASSES = {
    "test_events": (("UnixEventLoopTestsMixin|EventLoopTestsMixin",
                     "SubprocessTestsMixin", "utils.TestCase"),
                    "create_event_loop"),
    "test_sock_lowlevel": (("BaseSockTestsMixin", "utils.TestCase"),
                           "create_event_loop"),
    "test_sendfile": (("SendfileTestsBase", "utils.TestCase"),
                      "create_event_loop"),
    "test_server": (("SelectorStartServerTests",), "new_loop"),
    "test_buffered_proto": (("BaseTestBufferedProtocol", "unittest.TestCase"),
                            "new_loop"),
}

# Run first: the longest modules (the pool then ends with short ones).
SLOW_FIRST = ["test_tasks", "test_events", "test_subprocess", "test_ssl",
              "test_sendfile", "test_streams", "test_sock_lowlevel",
              "test_base_events", "test_unix_events", "test_sslproto"]


def _skips_for_this_version():
    here = sys.version_info[:2]
    return [(test_id, reason) for test_id, versions, reason in SKIPS
            if versions is None or versions[0] <= here <= versions[1]]


def _matches(test_id, pattern):
    if pattern.endswith(".*"):
        return test_id.startswith(pattern[:-1])
    return test_id == pattern


def _iter_tests(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _iter_tests(test)
        else:
            yield test


def _apply_skips(suite, skips):
    """Marks the listed tests skipped; returns the patterns that matched and
    the number of tests skipped."""
    used = set()
    n = 0
    for test in _iter_tests(suite):
        if not isinstance(test, unittest.TestCase):
            continue
        test_id = test.id().removeprefix("test.test_asyncio.")
        for pattern, reason in skips:
            if _matches(test_id, pattern):
                name = test._testMethodName
                setattr(test, name, unittest.skip(reason)(getattr(test, name)))
                used.add(pattern)
                n += 1
                break
    return used, n


def _count_loops():
    """Counts the loops created from now on: {ours, selector, mock}."""
    import asyncio
    import py_async_lib
    counts = dict.fromkeys(["ours", "selector", "mock"], 0)
    init = asyncio.BaseEventLoop.__init__

    def counting_init(self, *args, **kwargs):
        if isinstance(self, py_async_lib.EventLoop):
            counts["ours"] += 1
        elif isinstance(self, asyncio.selector_events.BaseSelectorEventLoop):
            counts["selector"] += 1
        else:  # test_utils.TestLoop, the mock-clock loop, and the like
            counts["mock"] += 1
        init(self, *args, **kwargs)

    asyncio.BaseEventLoop.__init__ = counting_init
    return counts


def _our_loop_class(name, module):
    """The class of OUR_LOOP_CLASSES for module name, or None."""
    if name not in OUR_LOOP_CLASSES:
        return None
    import py_async_lib
    from test.test_asyncio import utils
    names, hook = OUR_LOOP_CLASSES[name]
    where = {"utils": utils, "unittest": unittest}
    bases = []
    for alternatives in names:
        for dotted in alternatives.split("|"):
            owner, _, attr = dotted.rpartition(".")
            base = getattr(where[owner] if owner else module, attr, None)
            if base is not None:
                bases.append(base)
                break
        else:
            raise AttributeError(f"{name} has none of {alternatives}")
    cls = type("PyAsyncLibTests", tuple(bases), {
        hook: lambda self: py_async_lib.new_event_loop(),
        "__module__": module.__name__})
    cls.__qualname__ = cls.__name__
    return cls


def run_module(name):
    """Worker: runs one module on our loop, prints MARK + its counts."""
    import faulthandler
    import signal
    faulthandler.dump_traceback_later(MODULE_TIMEOUT - 30, exit=True)
    # A shell starts background jobs with SIGINT ignored, and Python keeps
    # that; the tests of asyncio.run()'s Ctrl-C handling need Python's own
    # handler (asyncio.Runner only replaces that one).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from our_loop import substitute_default_loop
    substitute_default_loop()
    loops = _count_loops()

    module_skipped = None
    try:
        module = importlib.import_module("test.test_asyncio." + name)
    except unittest.SkipTest as exc:  # e.g. the Windows-only modules
        print(f"{name}: module skipped: {exc}")
        module, module_skipped = None, str(exc)
    suite = (unittest.defaultTestLoader.loadTestsFromModule(module)
             if module else unittest.TestSuite())
    ours = module and _our_loop_class(name, module)
    if ours:
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(ours))
    module_skips = [(p, r) for p, r in _skips_for_this_version()
                    if p.startswith(name + ".")]
    used, listed = _apply_skips(suite, module_skips)
    result = unittest.TextTestRunner(
        stream=sys.stdout, verbosity=2).run(suite)
    failed = (result.failures + result.errors
              + [(t, "") for t in result.unexpectedSuccesses])
    counts = {
        "run": result.testsRun,
        "failed": len(failed),
        "skipped": len(result.skipped),
        "xfailed": len(result.expectedFailures),
        "listed_skips": listed,
        "module_skipped": module_skipped,
        "loops_ours": loops["ours"],
        "loops_selector": loops["selector"],
        "loops_mock": loops["mock"],
        "failed_ids": [t.id() for t, _ in failed],
        "unused_skips": [p for p, _ in module_skips if p not in used],
    }
    counts["passed"] = (counts["run"] - counts["failed"] - counts["skipped"]
                        - counts["xfailed"])
    sys.stdout.flush()
    print(MARK + json.dumps(counts), flush=True)


def _spawn(name, logdir):
    log_path = os.path.join(logdir, name + ".log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    start = time.monotonic()
    with open(log_path, "w") as log, \
            tempfile.TemporaryDirectory(prefix="asyncio-suite-") as cwd:
        try:
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--worker", name],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=cwd, env=env, timeout=MODULE_TIMEOUT)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            status = "timed out"
    elapsed = time.monotonic() - start
    with open(log_path, errors="replace") as log:
        text = log.read()
    counts = None
    for line in text.splitlines():
        if line.startswith(MARK):
            counts = json.loads(line[len(MARK):])
    return name, status, counts, elapsed, log_path


def _modules():
    import pkgutil
    import test.test_asyncio as package
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                   if m.name.startswith("test_"))
    return ([n for n in SLOW_FIRST if n in names]
            + [n for n in names if n not in SLOW_FIRST])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-j", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", metavar="MODULE", help=argparse.SUPPRESS)
    parser.add_argument("modules", nargs="*",
                        help="test_asyncio modules (default: all)")
    args = parser.parse_args(argv)
    if args.worker:
        return run_module(args.worker)

    version = "%d.%d" % sys.version_info[:2]
    logdir = os.path.join(ROOT, "build", "cpython-suite",
                          sys.implementation.cache_tag)
    os.makedirs(logdir, exist_ok=True)
    modules = args.modules or _modules()
    print(f"CPython {sys.version.split()[0]}'s test.test_asyncio on "
          f"py_async_lib ({len(modules)} modules, -j{args.j}, "
          f"logs in {os.path.relpath(logdir, ROOT)}/)", flush=True)

    start = time.monotonic()
    total = dict.fromkeys(["run", "passed", "failed", "skipped", "xfailed",
                           "listed_skips",
                           "loops_ours", "loops_selector", "loops_mock"], 0)
    bad, unused = [], []
    with concurrent.futures.ThreadPoolExecutor(args.j) as pool:
        jobs = [pool.submit(_spawn, name, logdir) for name in modules]
        for job in concurrent.futures.as_completed(jobs):
            name, status, counts, elapsed, log_path = job.result()
            if counts is None:
                print(f"  {name:28} CRASHED ({status}), see {log_path}",
                      flush=True)
                bad.append((name, f"exit status {status}", log_path))
                continue
            for key in total:
                total[key] += counts[key]
            if counts["module_skipped"]:
                print(f"  {name:28} module skipped: {counts['module_skipped']}",
                      flush=True)
                continue
            print(f"  {name:28} {counts['run']:5} run {counts['passed']:5} "
                  f"passed {counts['failed']:3} failed {counts['skipped']:4} "
                  f"skipped {counts['xfailed']:2} xfailed  loops "
                  f"{counts['loops_ours']}/{counts['loops_selector']}/"
                  f"{counts['loops_mock']}  "
                  f"{elapsed:6.1f} s", flush=True)
            for test_id in counts["failed_ids"]:
                bad.append((name, "FAILED " + test_id, log_path))
            unused.extend(counts["unused_skips"])
            if status != 0 and not counts["failed_ids"]:
                bad.append((name, f"exit status {status}", log_path))

    elapsed = time.monotonic() - start
    print(f"Python {version} test.test_asyncio on py_async_lib: "
          f"{total['run']} run, {total['passed']} passed, {total['failed']} "
          f"failed, {total['skipped']} skipped ({total['listed_skips']} by "
          f"SKIPS), {total['xfailed']} xfailed; "
          f"loops created: {total['loops_ours']} ours, "
          f"{total['loops_selector']} explicit selector loops, "
          f"{total['loops_mock']} mock-clock/test loops; {elapsed:.0f} s")
    for pattern in unused:
        print(f"  (SKIPS entry for a test this Python lacks: {pattern})")
    for name, what, log_path in bad:
        print(f"  {what}  ({os.path.relpath(log_path, ROOT)})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
