"""Who holds the embedded warehouse. The embedded engine (chdb) serves a data directory to one process at a time:
it locks `<dir>/status` (flock) and writes its PID there, and a second process fails with a bare
`Error initializing EmbeddedServer`. Opening the directory read-only does not help (checked on chdb 4.4: the
`mode=ro` connection takes the same lock). So each command checks first (cem.preflight) and says who holds it and
what to do instead, in one line, before it tries: the engine would print its own error first.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from pathlib import Path

_PID = re.compile(r"^PID:\s*(\d+)", re.MULTILINE)


def holder_pid(status: Path) -> int | None:
    """The PID of another live process holding the status file's lock. A file left by a process that died (its
    PID gone, or reused by a process that holds no lock) holds nothing: the engine takes it over."""
    try:
        text = status.read_text(errors="replace")
    except OSError:
        return None  # no file: nobody has the directory open (the engine removes it on a clean exit)
    found = _PID.search(text)
    if not found:
        return None
    pid = int(found.group(1))
    if pid == os.getpid() or not _alive(pid):
        return None
    return pid if _locked(status) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _locked(status: Path) -> bool:
    """Whether another process holds the file's lock. Probing takes a shared lock for an instant; it is only
    reached when the file names a live process, that is when the lock is almost certainly held."""
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
