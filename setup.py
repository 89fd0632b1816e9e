"""Builds libcasyncio.so with make and ships it inside the package, next to the
cffi extension that links it through an $ORIGIN rpath.

Everything else is in pyproject.toml.  The build also leaves the extension
and the library in the source tree's py_async_lib/ (what `make` puts there
when cffi is installed), so that `make && pip install .` in a fresh virtual
environment, where make finds no cffi, leaves a checkout whose tests and
benchmarks import the package built in place.
"""
import importlib.machinery
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "libcasyncio", "libcasyncio.so")


class BuildExtWithLib(build_ext):
    def run(self):
        subprocess.check_call(["make", "-C", HERE, "lib"])
        # The name the extension asks for: the library's soname (Makefile).
        soname = subprocess.check_output(
            ["make", "-s", "--no-print-directory", "-C", HERE, "soname"],
            text=True).strip()
        super().run()
        package = os.path.join(self.build_lib, "py_async_lib")
        os.makedirs(package, exist_ok=True)
        shutil.copy2(LIB, os.path.join(package, soname))
        in_place = os.path.join(HERE, "py_async_lib")
        if os.path.realpath(package) != os.path.realpath(in_place):
            # This interpreter's other builds of the extension go first: it
            # would prefer a (stale) _casyncio.cpython-3XX-*.so from make
            # over the _casyncio.abi3.so built here.  Other versions' stay.
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                old = os.path.join(in_place, "_casyncio" + suffix)
                if os.path.exists(old):
                    os.unlink(old)
            for built in self.get_outputs() + [os.path.join(package, soname)]:
                _replace(built, os.path.join(in_place, os.path.basename(built)))


def _replace(src, dest):
    # A new file renamed over the old one: a process running the old copy
    # keeps its mapping (as in the Makefile's ffi target).
    shutil.copy2(src, dest + ".tmp")
    os.replace(dest + ".tmp", dest)


setup(
    cffi_modules=["build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithLib},
)
