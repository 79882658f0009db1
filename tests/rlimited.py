"""``python tests/rlimited.py serve ...``: ``coda-lite`` under real kernel resource limits.

``$CODA_TEST_FSIZE_BYTES``: every file the process writes stops growing at that many bytes:
the kernel fails the write (``EFBIG``; SQLite says "disk I/O error"), as a full disk does,
without needing a mount. SIGXFSZ is ignored so the write fails instead of killing the process.
A test lifts the limit again on the running process with ``resource.prlimit``.

``$CODA_TEST_NOFILE``: the process may hold at most that many open files (soft and hard
limit, so the service cannot lift it).
"""

from __future__ import annotations

import os
import resource
import runpy
import signal

if "CODA_TEST_FSIZE_BYTES" in os.environ:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(os.environ["CODA_TEST_FSIZE_BYTES"]), hard))
if "CODA_TEST_NOFILE" in os.environ:
    files = int(os.environ["CODA_TEST_NOFILE"])
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
runpy.run_module("coda_lite", run_name="__main__", alter_sys=True)
