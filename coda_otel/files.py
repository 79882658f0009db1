"""Safe files for logs and snapshots: validated ids, atomic writes, bounded folders.

    from coda_otel.files import RetentionIndex, atomic_write_json, new_id, safe_path

    sid = new_id("snap")                       # 'snap-20261125T030102-3f9a1c2b7d4e'
    path = safe_path(folder, sid, ".json")     # always inside folder, or ValueError
    size = atomic_write_json(path, {"snapshot_id": sid}, indent=None)  # durable: fsync'd
    atomic_write_json(log_path, record, durable=False)   # still atomic, no fsync (debug logs)
    enforce_retention(folder, "*.json", max_files=500, max_bytes=50 * 2**20)  # lists the folder
    index = RetentionIndex(folder, "*.json", max_files=500, max_bytes=50 * 2**20)
    index.record(path, size)                   # same limits, kept in memory: no listing per write

An id that arrives from outside (CLI, WebSocket) must pass :func:`validate_id` before it
names a file; :func:`safe_path` does that and checks the resolved path too. JSON is encoded
piece by piece (``json_chunks``) and written in ~32 KiB batches, so a large document never
holds the GIL for one long ``json.dumps`` call. Temporary files (``.<name>.<random>.tmp``)
left by a killed write are removed by retention once older than ``STALE_TMP_S``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Letters, digits, dot, dash and underscore; must start with a letter or digit; 1-128 chars.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: A temporary file older than this (seconds) belongs to a killed write and is removed.
STALE_TMP_S = 600.0
_BATCH_CHARS = 32 * 1024
_SPLIT_DEPTH = 4
_SLICE = 128


class InvalidIdError(ValueError):
    """An id that cannot safely name a file."""


def new_id(prefix: str) -> str:
    """A sortable, unguessable id: ``prefix-YYYYmmddTHHMMSS-<12 hex>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(6)}"


def validate_id(value: object) -> str:
    """Return ``value`` if it is a safe id, else raise :class:`InvalidIdError` saying why."""
    if not isinstance(value, str):
        raise InvalidIdError(f"id must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidIdError("id is empty")
    if len(value) > 128:
        raise InvalidIdError(f"id is {len(value)} characters long; at most 128 are allowed")
    if ".." in value or not ID_PATTERN.match(value):
        raise InvalidIdError(
            f"id {value[:40]!r} may only hold letters, digits, '.', '-' and '_' "
            "(no path separators, no '..')"
        )
    return value


def safe_path(folder: Path, ident: str, suffix: str = ".json", prefix: str = "") -> Path:
    """The file for ``ident`` inside ``folder``; raises :class:`InvalidIdError` otherwise."""
    validate_id(ident)
    root = folder.resolve()
    path = (root / f"{prefix}{ident}{suffix}").resolve()
    if path.parent != root:
        raise InvalidIdError(f"id {ident[:40]!r} resolves outside {root}")
    return path


def atomic_write_chunks(path: Path, chunks: Iterable[bytes], *, durable: bool = True) -> int:
    """Write ``chunks`` so that readers see the old file or the new one, never a torn one.

    Temporary file in the same folder (mode 0600), ``os.replace``. With ``durable`` (the
    default) the file is fsync'd before the rename and the folder after it, so the new file
    also survives a power cut; without, a crash may lose the newest file (never tear it).
    Returns the number of bytes written.
    """
    if not path.parent.is_dir():  # a stat is much cheaper than a failing mkdir on slow file systems
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_folder(path.parent)
    return size


def _fsync_folder(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Atomically write ``data`` (see :func:`atomic_write_chunks` for ``durable``)."""
    atomic_write_chunks(path, (data,), durable=durable)


def json_chunks(obj: Any, *, indent: int | None = None) -> Iterator[str]:
    """``json.dumps(obj, indent=indent, ensure_ascii=False, default=str)``, piece by piece.

    Compact JSON (``indent=None``) splits the outer containers and encodes each element with
    the C encoder, so the text is identical to one ``json.dumps`` call but no single call runs
    long; indented JSON uses the standard library's incremental encoder.
    """
    if indent is not None:
        yield from json.JSONEncoder(indent=indent, ensure_ascii=False, default=str).iterencode(obj)
        return
    yield from _pieces(obj, json.JSONEncoder(ensure_ascii=False, default=str), _SPLIT_DEPTH)


def _big(obj: Any, depth: int) -> bool:
    """Worth splitting: a list longer than a slice, or a str-keyed dict holding one."""
    kind = type(obj)
    if kind is list or kind is tuple:
        return len(obj) > _SLICE or (depth > 0 and any(_big(v, depth - 1) for v in obj))
    if kind is dict and depth > 0 and all(type(k) is str for k in obj):
        return any(_big(v, depth - 1) for v in obj.values())
    return False


def _pieces(obj: Any, enc: json.JSONEncoder, depth: int) -> Iterator[str]:
    if not _big(obj, depth):  # small: one C call
        yield enc.encode(obj)
    elif type(obj) is dict:  # runs of small items in one call, big values split further
        sep, small = "{", {}
        for key, value in obj.items():
            if not _big(value, depth - 1):
                small[key] = value
                continue
            if small:
                yield sep + enc.encode(small)[1:-1]
                sep, small = ", ", {}
            yield f"{sep}{enc.encode(key)}: "
            yield from _pieces(value, enc, depth - 1)
            sep = ", "
        if small:
            yield sep + enc.encode(small)[1:-1]
        yield "}"
    elif len(obj) > _SLICE:  # long list: a slice of elements per C call
        for start in range(0, len(obj), _SLICE):
            body = enc.encode(list(obj[start : start + _SLICE]))[1:-1]
            yield ("[" if start == 0 else ", ") + body
        yield "]"
    else:
        sep = "["
        for value in obj:
            yield sep
            yield from _pieces(value, enc, depth - 1)
            sep = ", "
        yield "]"


def _batches(pieces: Iterable[str]) -> Iterator[bytes]:
    buf: list[str] = []
    n = 0
    for piece in pieces:
        buf.append(piece)
        n += len(piece)
        if n >= _BATCH_CHARS:
            yield "".join(buf).encode("utf-8", "backslashreplace")
            buf, n = [], 0
    if buf:  # a lone surrogate becomes the JSON escape "\ud800", never a lost write
        yield "".join(buf).encode("utf-8", "backslashreplace")


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 2, durable: bool = True) -> int:
    """Atomically write ``obj`` as UTF-8 JSON, encoded incrementally; returns the bytes written."""
    return atomic_write_chunks(path, _batches(json_chunks(obj, indent=indent)), durable=durable)


def _listing(folder: Path, pattern: str) -> list[tuple[float, str, int, Path]]:
    """(mtime, name, size, path) of the files matching ``pattern``, oldest first."""
    entries: list[tuple[float, str, int, Path]] = []
    for p in folder.glob(pattern):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        entries.append((st.st_mtime, p.name, st.st_size, p))
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

    Age is modification time, then name. Temporary files are never counted; those older than
    ``stale_tmp_s`` (left by killed writes) are deleted and returned too.
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
