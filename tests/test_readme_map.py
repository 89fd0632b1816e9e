"""README.md's map ("## How it is built") names every source file.

The map is the code block under that heading: one entry a line, a name then
its description; a name ending in "/" is a directory, and its entries are
indented two spaces deeper than it (a line indented further continues a
description).  Every file under
py_async_lib/, libcasyncio/ and examples/ (when there is one) must be named
there, under its directory, and every file the map names under those
directories must exist.  A new module fails this test until it has a line in
the map.
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED = ("py_async_lib", "libcasyncio", "examples")

# What builds leave among the sources: not sources.
_BUILT = re.compile(r"(\.so(\.\d+)*|\.o|\.pyc|\.tmp)$")
_SKIP_DIRS = {"__pycache__"}

_NAME = re.compile(r"^[\w.+-]+(/[\w.+-]+)*/?$")


def readme_map():
    """The paths the map names (directories end with '/')."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^## How it is built\n+```\n(.*?)^```", text,
                  re.S | re.M)
    assert m, "README.md has no code block under '## How it is built'"
    paths = set()
    stack = []   # the enclosing directories' paths, outermost first
    for line in m.group(1).splitlines():
        indent = len(line) - len(line.lstrip())
        depth, odd = divmod(indent, 2)
        # An entry sits two spaces deeper than its directory; a line that
        # is deeper still continues the description above it.
        if not line.strip() or odd or depth > len(stack):
            continue
        name = line.split()[0]
        assert _NAME.match(name), f"not a file or directory name: {line!r}"
        del stack[depth:]
        path = (stack[-1] if stack else "") + name
        paths.add(path)
        if name.endswith("/"):
            stack.append(path)
    return paths


def source_files():
    """Files under the checked directories, relative to the root."""
    found = set()
    for top in CHECKED:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames
                           if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
            for name in filenames:
                if not _BUILT.search(name):
                    rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                    found.add(rel.replace(os.sep, "/"))
    return found


def test_map_parses():
    paths = readme_map()
    assert "libcasyncio/casyncio.h" in paths
    assert "py_async_lib/loop.py" in paths


def test_readme_map_names_every_source_file():
    missing = sorted(source_files() - readme_map())
    assert not missing, (
        "README.md's map ('## How it is built') does not name these files; "
        "add a line for each under its directory: " + ", ".join(missing))


def test_readme_map_names_no_missing_file():
    files = source_files()
    stale = sorted(
        p for p in readme_map()
        if p.split("/", 1)[0] in CHECKED and not p.endswith("/")
        and p not in files)
    assert not stale, (
        "README.md's map names files that do not exist (renamed or "
        "removed?): " + ", ".join(stale))
