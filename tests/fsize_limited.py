"""``python tests/fsize_limited.py serve ...``: ``coda-lite`` with a real file-size limit.

Every file the process writes stops growing at ``$CODA_TEST_FSIZE_BYTES`` bytes: the kernel
fails the write (``EFBIG``; SQLite says "database or disk is full"), as a full disk does,
without needing a mount. SIGXFSZ is ignored so the write fails instead of killing the process.
"""

from __future__ import annotations

import os
import resource
import runpy
import signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(os.environ["CODA_TEST_FSIZE_BYTES"]), hard))
runpy.run_module("coda_lite", run_name="__main__", alter_sys=True)
