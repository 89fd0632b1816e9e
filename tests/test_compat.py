"""py_async_lib._compat: what the loop takes from asyncio's internals.

The methods the loop borrows from asyncio's selector loop run with our loop
as `self`: every attribute they read on it must exist there.  A new CPython
whose borrowed methods use a new attribute fails here, by name, rather than
in some rarely taken branch at run time."""
import asyncio
import dis
import inspect
import subprocess
import sys
import types

import pytest

import py_async_lib
from py_async_lib import _compat
from py_async_lib.loop import EventLoop

# Instruction names that push a local or a cell onto the stack.
_LOADS = {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW", "LOAD_DEREF",
          "LOAD_FAST_AND_CLEAR", "LOAD_FAST_LOAD_FAST",
          "LOAD_FAST_BORROW_LOAD_FAST_BORROW"}
_ATTRS = {"LOAD_ATTR", "LOAD_METHOD"}


def _code_objects(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def self_attributes(func):
    """The attributes func (and the functions nested in it) read on `self`:
    each LOAD_ATTR right after `self` was pushed."""
    names = set()
    for code in _code_objects(func.__code__):
        previous = None
        for ins in dis.get_instructions(code):
            if ins.opname in _ATTRS and previous is not None:
                pushed = previous.argval
                top = pushed[-1] if isinstance(pushed, tuple) else pushed
                if top == "self":
                    names.add(ins.argval)
            previous = ins if ins.opname in _LOADS else None
    return names


def test_the_collector_sees_self_attributes():
    def method(self, other):
        def nested():
            return self._nested_attr
        return self._a + other._not_self + self.b() + nested()
    assert self_attributes(method) == {"_a", "b", "_nested_attr"}


@pytest.mark.parametrize("name", sorted(_compat.BORROWED_METHODS))
def test_borrowed_method_finds_what_it_uses(name):
    func = _compat.BORROWED_METHODS[name]
    assert getattr(EventLoop, name) is func
    loop = py_async_lib.new_event_loop()
    try:
        missing = sorted(attr for attr in self_attributes(func)
                         if not hasattr(loop, attr))
    finally:
        loop.close()
    assert not missing, (
        f"{func.__qualname__} (borrowed from asyncio) uses {missing} on the "
        f"loop, which our loop does not have on Python {_compat.PYTHON}")


def test_our_loop_methods_find_what_they_use():
    # The same for the methods our own modules define: what they use of
    # asyncio's BaseEventLoop must exist on this version.
    loop = py_async_lib.new_event_loop()
    missing = {}
    try:
        for cls in EventLoop.__mro__:
            if not cls.__module__.startswith("py_async_lib"):
                continue
            for name, func in vars(cls).items():
                if isinstance(func, types.FunctionType):
                    lacking = [a for a in self_attributes(func)
                               if not hasattr(loop, a)]
                    if lacking:
                        missing[f"{cls.__name__}.{name}"] = lacking
    finally:
        loop.close()
    assert not missing


@pytest.mark.parametrize("owner", sorted(_compat.HOOKS, key=str))
def test_hooks_exist_in_asyncio(owner):
    # What asyncio calls and we override: were it renamed, ours would never
    # run.  _compat checks it at import; this says which.
    for name in _compat.HOOKS[owner]:
        assert hasattr(owner, name), name
        assert getattr(EventLoop, name) is not getattr(owner, name) or \
            name in _compat.BORROWED_METHODS, name


def _accepts(ours, theirs):
    """The parameters of asyncio's `theirs` that our `ours` would refuse."""
    mine = inspect.signature(ours).parameters
    if any(p.kind is p.VAR_KEYWORD for p in mine.values()):
        return []
    return [name for name, p in inspect.signature(theirs).parameters.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and name not in mine]


@pytest.mark.parametrize("owner,name", [
    (owner, name) for owner, names in _compat.HOOKS.items()
    for name in names])
def test_hooks_take_what_asyncio_passes(owner, name):
    # asyncio calls these with its own arguments (3.15 added context= to
    # several): ours must take every parameter that asyncio's Unix loop's
    # have.
    ours = getattr(EventLoop, name)
    theirs = getattr(asyncio.unix_events._UnixSelectorEventLoop, name)
    assert not _accepts(ours, theirs), (
        f"{name} lacks {_accepts(ours, theirs)} on Python {_compat.PYTHON}")


def test_no_private_asyncio_import_outside_compat():
    # The one module: the rest of the package imports asyncio's private
    # names from _compat only.
    import pathlib
    import re
    pkg = pathlib.Path(py_async_lib.__file__).parent
    private = re.compile(
        r"^\s*(from asyncio(\.\w+)? import|import asyncio\.)|asyncio\.\w+\._",
        re.M)
    offenders = {}
    public = re.compile(
        r"^\s*from asyncio import (protocols|transports)(, (protocols|"
        r"transports))*\s*$")
    for path in pkg.glob("*.py"):
        if path.name == "_compat.py":
            continue
        for line in path.read_text().splitlines():
            if private.search(line) and not public.match(line):
                offenders.setdefault(path.name, []).append(line.strip())
    assert not offenders


def _run_hidden(code, hide):
    """Runs code in a fresh interpreter in which the asyncio names in hide
    ("module:attr" or "module:Class.attr") do not exist (as on a future
    Python)."""
    prelude = "import asyncio, importlib\n"
    for name in hide:
        mod, _, path = name.partition(":")
        owner, _, attr = path.rpartition(".")
        prelude += f"o = importlib.import_module({mod!r})\n"
        if owner:
            prelude += f"o = getattr(o, {owner!r})\n"
        prelude += f"if hasattr(o, {attr!r}): delattr(o, {attr!r})\n"
    return subprocess.run([sys.executable, "-c", prelude + code],
                          capture_output=True, text=True, timeout=120)


def test_missing_name_fails_import_with_a_clear_message():
    out = _run_hidden("import py_async_lib",
                      ["asyncio.base_events:_set_nodelay"])
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("py_async_lib._compat.CompatError: "), last
    assert f"Python {_compat.PYTHON}" in last
    assert "asyncio.base_events._set_nodelay" in last


def test_missing_borrowed_method_fails_import():
    out = _run_hidden(
        "import py_async_lib",
        ["asyncio.selector_events:BaseSelectorEventLoop._sock_sendall"])
    assert out.returncode != 0
    assert "BaseSelectorEventLoop._sock_sendall" in out.stderr
    assert "CompatError" in out.stderr


def test_compat_error_is_an_import_error():
    assert issubclass(_compat.CompatError, ImportError)


def _attributes_missing(cls, instance):
    """{method: [attributes it reads on self that instance lacks]} for the
    methods asyncio's class cls defines."""
    missing = {}
    for name, func in vars(cls).items():
        if isinstance(func, types.FunctionType):
            lacking = sorted(a for a in self_attributes(func)
                             if not hasattr(instance, a))
            if lacking:
                missing[name] = lacking
    return missing


def test_flow_control_mixin_finds_what_it_uses(loop):
    # Our transports take asyncio's write flow control as it is.
    import socket
    a, b = socket.socketpair()
    try:
        transport = loop._make_socket_transport(a, asyncio.Protocol())
        loop.run_until_complete(asyncio.sleep(0))
        assert not _attributes_missing(_compat.FlowControlMixin, transport)
        transport.close()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        b.close()


def test_subprocess_transport_base_finds_what_it_uses(loop):
    async def main():
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, sys.executable, "-c", "pass")
        missing = _attributes_missing(_compat.BaseSubprocessTransport,
                                      transport)
        await transport._wait()
        transport.close()
        return missing
    assert not loop.run_until_complete(main())
