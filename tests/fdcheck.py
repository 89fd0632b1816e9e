"""The one fd-leak check of the test suite: what a test opened and did not
close, compared fd by fd with what each fd pointed to before."""
import os

__all__ = ["open_fds", "leaked_fds"]


def open_fds():
    """{fd: what it points to} for this process's open fds.  The fd that
    listdir() used for the listing is closed by the time it returns, so its
    readlink() fails and it is left out."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return fds


def leaked_fds(before):
    """The fds open now that were not open (to the same thing) in `before`."""
    return sorted(f"{fd} -> {target}" for fd, target in open_fds().items()
                  if before.get(fd) != target)
