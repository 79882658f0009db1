"""Free disk space of the data folder: a health component, a gauge and the telemetry reserve.

    from coda_otel.health.disk import DiskSpace

    disk = DiskSpace(coda_home, low_bytes=200 * 2**20, reserve_bytes=50 * 2**20, metrics=metrics)
    watchdog = CodaWatchdog([*components, disk], required=[c.name for c in components])
    disk.telemetry_may_write(4096)   # False once a write would leave less than the reserve
    await disk.get_heartbeat()   # {'healthy': False, 'cause': 'resource', 'free_bytes': ..., ...}

The component (name ``"disk"``) is ``degraded`` (cause ``resource``) while free space is
below ``low_bytes``, well before writes fail; ``coda_disk_free_bytes`` and
``coda_disk_low_bytes`` are read at scrape time (one ``statvfs``, no lock). Telemetry
writers stop at ``reserve_bytes`` so the application's own data (the memory store) keeps room.
Free space is not something a restart gives back: its heartbeat says ``cause: "resource"``,
so the watchdog reports it (``degraded``) and never restarts it or marks it ``failed``
(``restartable = False`` says the same to any supervisor); it is healthy again at the first
check after space is freed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from coda_otel.health.causes import RESOURCE
from coda_otel.metrics import CodaMetrics

DEFAULT_LOW_BYTES = 200 * 2**20
DEFAULT_RESERVE_BYTES = 50 * 2**20


class DiskSpace:
    """Watches the filesystem holding ``path`` (see the module docstring)."""

    name = "disk"
    restartable = False  # the watchdog reports it, never restarts it

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        low_bytes: int = DEFAULT_LOW_BYTES,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
        metrics: CodaMetrics | None = None,
    ) -> None:
        if low_bytes < 0 or reserve_bytes < 0:
            raise ValueError("low_bytes and reserve_bytes must not be negative")
        self.path = Path(path)
        self.low_bytes = low_bytes
        self.reserve_bytes = reserve_bytes
        if metrics is not None:
            metrics.disk_free.set_function(lambda: float(self.free_bytes()))
            metrics.disk_low.set(low_bytes)

    def free_bytes(self) -> int:
        """Bytes available to this process on ``path``'s filesystem (0 if it cannot be read)."""
        try:
            return int(shutil.disk_usage(self.path).free)
        except OSError:
            return 0

    def telemetry_may_write(self, size: int) -> bool:
        """True while writing ``size`` bytes still leaves ``reserve_bytes`` free."""
        return self.free_bytes() - max(0, size) >= self.reserve_bytes

    async def get_heartbeat(self) -> dict[str, Any]:
        free = self.free_bytes()
        beat: dict[str, Any] = {
            "healthy": free >= self.low_bytes,
            "models_loaded": True,
            "free_bytes": free,
            "low_bytes": self.low_bytes,
            "reserve_bytes": self.reserve_bytes,
            "path": str(self.path),
        }
        if free < self.low_bytes:
            beat["cause"] = RESOURCE  # degraded and re-checked, never restarted
            beat["last_error"] = (
                f"only {free} bytes free on {self.path} (below {self.low_bytes}); telemetry "
                f"stops writing at {self.reserve_bytes}, then the memory store runs out"
            )
        return beat

    async def restart(self) -> None:
        """Nothing to restart."""

    async def force_restart(self) -> None:
        """Nothing to restart."""
