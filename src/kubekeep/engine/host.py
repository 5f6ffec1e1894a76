"""Who and where: recorded in snapshots, keys and locks."""

from __future__ import annotations

import functools
import getpass
import os
import socket


@functools.cache
def username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "")


@functools.cache
def hostname() -> str:
    return socket.gethostname()
