"""Builds libcasyncio.so with make and ships it inside the package, next to the
cffi extension that links it through an $ORIGIN rpath."""
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
        super().run()
        targets = [os.path.join(self.build_lib, "py_async_lib")]
        if self.inplace:
            targets.append(os.path.join(HERE, "py_async_lib"))
        for target in targets:
            os.makedirs(target, exist_ok=True)
            shutil.copy2(LIB, target)


setup(
    cffi_modules=["build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithLib},
)
