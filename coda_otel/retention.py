"""Bounded folders: keep at most so many files and bytes, newest first, and sweep stale temp files.

    from coda_otel.retention import RetentionIndex, enforce_retention

    enforce_retention(folder, "*.json", max_files=500, max_bytes=50 * 2**20)  # lists the folder
    index = RetentionIndex(folder, "*.json", max_files=500, max_bytes=50 * 2**20)
    index.record(path, size)        # same limits, kept in memory: no listing per write

The newest file always stays, even when it alone is over the byte budget. Temporary files
(``.<name>.<random>.tmp``) left by a killed write go once older than
:data:`~coda_otel.files.STALE_TMP_S`.
"""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from coda_otel.files import STALE_TMP_S

__all__ = ["RetentionIndex", "enforce_retention", "remove_stale_temp_files"]


#: The UTC timestamp coda-otel's file names carry (``snap-20261202T051203123456-...``).
_NAME_STAMP = re.compile(r"(\d{8}T\d{6})(\d{0,6})")


def age_key(name: str, mtime: float) -> str:
    """A file's place in time: the timestamp its name carries (then its sequence, by name),
    else its modification time. Names are what the writer decided; a modification time can
    be anything after a clock jump or a copy, and must not keep a file forever."""
    found = _NAME_STAMP.search(name)
    if found:
        return found.group(1) + found.group(2).ljust(6, "0")
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y%m%dT%H%M%S%f")


def _listing(folder: Path, pattern: str) -> list[tuple[str, str, int, Path]]:
    """(age key, name, size, path) of the files matching ``pattern``, oldest first."""
    entries: list[tuple[str, str, int, Path]] = []
    for p in folder.glob(pattern):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        entries.append((age_key(p.name, st.st_mtime), p.name, st.st_size, p))
    entries.sort()
    return entries


def remove_stale_temp_files(
    folder: Path, pattern: str, *, older_than_s: float = STALE_TMP_S
) -> list[Path]:
    """Delete killed writes' temporary files (``.<pattern>.*.tmp``) older than ``older_than_s``."""
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed: list[Path] = []
    for p in folder.glob(f".{pattern}.*.tmp"):
        try:
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:
            continue
    return removed


def enforce_retention(
    folder: Path,
    pattern: str,
    *,
    max_files: int | None = None,
    max_bytes: int | None = None,
    stale_tmp_s: float = STALE_TMP_S,
) -> list[Path]:
    """Delete the oldest files matching ``pattern`` until both limits hold (the newest always
    stays); returns the deleted.

    Age is the timestamp in the file's name (then the name), else its modification time
    (:func:`age_key`). Temporary files are never counted; those older than ``stale_tmp_s``
    (left by killed writes) are deleted and returned too.
    """
    if not folder.is_dir():
        return []
    deleted = remove_stale_temp_files(folder, pattern, older_than_s=stale_tmp_s)
    entries = _listing(folder, pattern)
    total = sum(e[2] for e in entries)
    while len(entries) > 1 and (  # the newest file always stays, even over a tiny budget
        (max_files is not None and len(entries) > max_files)
        or (max_bytes is not None and total > max_bytes)
    ):
        _, _, size, victim = entries.pop(0)
        with contextlib.suppress(FileNotFoundError):
            victim.unlink()
        total -= size
        deleted.append(victim)
    return deleted


class RetentionIndex:
    """:func:`enforce_retention` for one writer, from an in-memory index instead of a listing.

    The index (file name -> size, oldest first, and the total) is seeded by one listing of
    ``folder`` at the first :meth:`record` and refreshed by another every ``relist_every``
    records, so files added or removed by someone else are picked up; in between, each write
    costs no file-system call beyond deleting what is over the limits. Not thread-safe: the
    one thread that writes into ``folder`` owns it. Files are matched by name in ``folder``.
    """

    def __init__(
        self,
        folder: Path,
        pattern: str,
        *,
        max_files: int | None = None,
        max_bytes: int | None = None,
        relist_every: int = 100,
        stale_tmp_s: float = STALE_TMP_S,
    ) -> None:
        if relist_every < 1:
            raise ValueError(f"relist_every must be >= 1, got {relist_every!r}")
        self.folder = Path(folder)
        self.pattern = pattern
        self.max_files, self.max_bytes = max_files, max_bytes
        self.relist_every = relist_every
        self.stale_tmp_s = stale_tmp_s
        self.listings = 0
        self._sizes: dict[str, int] | None = None
        self._total = 0
        self._since_listing = 0

    @property
    def count(self) -> int:
        return len(self._sizes or {})

    @property
    def total_bytes(self) -> int:
        return self._total

    def _relist(self) -> list[Path]:
        removed = remove_stale_temp_files(self.folder, self.pattern, older_than_s=self.stale_tmp_s)
        entries = _listing(self.folder, self.pattern) if self.folder.is_dir() else []
        self._sizes = {name: size for _, name, size, _ in entries}
        self._total = sum(self._sizes.values())
        self._since_listing = 0
        self.listings += 1
        return removed

    def record(self, path: Path, size: int) -> list[Path]:
        """Note that ``path`` (in ``folder``) now holds ``size`` bytes; prune; return deletions."""
        deleted: list[Path] = []
        if self._sizes is None or self._since_listing >= self.relist_every:
            deleted += self._relist()
        sizes: dict[str, int] = self._sizes if self._sizes is not None else {}
        self._total += size - sizes.pop(path.name, 0)
        sizes[path.name] = size  # newest last
        self._sizes = sizes
        self._since_listing += 1
        while len(sizes) > 1 and (  # the file just written always stays
            (self.max_files is not None and len(sizes) > self.max_files)
            or (self.max_bytes is not None and self._total > self.max_bytes)
        ):
            name = next(iter(sizes))
            self._total -= sizes.pop(name)
            victim = self.folder / name
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()
            deleted.append(victim)
        return deleted
