"""Safe files for logs and snapshots: validated ids, atomic writes, bounded folders.

    from coda_otel.files import atomic_write_json, enforce_retention, new_id, safe_path

    sid = new_id("snap")                       # 'snap-20261125T030102-3f9a1c2b7d4e'
    path = safe_path(folder, sid, ".json")     # always inside folder, or ValueError
    atomic_write_json(path, {"snapshot_id": sid})
    enforce_retention(folder, "*.json", max_files=500, max_bytes=50 * 2**20)

An id that arrives from outside (CLI, WebSocket) must pass :func:`validate_id` before it
names a file; :func:`safe_path` does that and checks the resolved path too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Letters, digits, dot, dash and underscore; must start with a letter or digit; 1-128 chars.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never a torn one.

    Temporary file in the same folder, flush, fsync, ``os.replace``, then fsync the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 2) -> int:
    """Atomically write ``obj`` as UTF-8 JSON; returns the number of bytes written."""
    data = json.dumps(obj, indent=indent, ensure_ascii=False, default=str).encode("utf-8")
    atomic_write_bytes(path, data)
    return len(data)


def enforce_retention(
    folder: Path,
    pattern: str,
    *,
    max_files: int | None = None,
    max_bytes: int | None = None,
) -> list[Path]:
    """Delete the oldest files matching ``pattern`` until both limits hold; returns the deleted.

    Age is modification time, then name. Leftover temporary files are never counted.
    """
    if not folder.is_dir():
        return []
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
    total = sum(e[2] for e in entries)
    deleted: list[Path] = []
    while entries and (
        (max_files is not None and len(entries) > max_files)
        or (max_bytes is not None and total > max_bytes)
    ):
        _, _, size, victim = entries.pop(0)
        with contextlib.suppress(FileNotFoundError):
            victim.unlink()
        total -= size
        deleted.append(victim)
    return deleted
