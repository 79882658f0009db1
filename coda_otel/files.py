"""Safe files for logs and snapshots: validated ids and atomic writes.

    from coda_otel.files import atomic_write_json, new_id, safe_path

    sid = new_id("snap")                       # 'snap-20261125T030102-3f9a1c2b7d4e'
    path = safe_path(folder, sid, ".json")     # always inside folder, or ValueError
    size = atomic_write_json(path, {"snapshot_id": sid}, indent=None)  # durable: fsync'd
    atomic_write_json(log_path, record, durable=False)   # still atomic, no fsync (debug logs)

Keeping folders bounded is :mod:`coda_otel.retention`'s job.

An id that arrives from outside (CLI, WebSocket) must pass :func:`validate_id` before it
names a file; :func:`safe_path` does that and checks the resolved path too. JSON is encoded
piece by piece (``json_chunks``) and written in ~32 KiB batches, so a large document never
holds the GIL for one long ``json.dumps`` call. Temporary files (``.<name>.<random>.tmp``)
left by a killed write are removed by retention once older than ``STALE_TMP_S``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
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
#: Texts of a JSONTexts joined per piece (~50 KiB of memories' JSON).
_TEXTS_SLICE = 256
#: Compact JSON as ``json_chunks`` writes it (stateless: one shared by every thread).
_COMPACT = json.JSONEncoder(ensure_ascii=False, default=str)


class InvalidIdError(ValueError):
    """An id that cannot safely name a file."""


_sequence = itertools.count()


def new_id(prefix: str) -> str:
    """A sortable, unguessable id: ``prefix-YYYYmmddTHHMMSSffffff-<sequence>-<8 hex>`` (UTC,
    microseconds, then this process's sequence, so two ids of one instant keep their order)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{prefix}-{stamp}-{next(_sequence) % 1_000_000:06d}-{secrets.token_hex(4)}"


def validate_id(value: object) -> str:
    """Return ``value`` if it is a safe id, else raise :class:`InvalidIdError` saying why."""
    if not isinstance(value, str):
        raise InvalidIdError(f"id must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidIdError("id is empty")
    if len(value) > 128:
        raise InvalidIdError(f"id is {len(value)} characters long; at most 128 are allowed")
    if ".." in value or not ID_PATTERN.fullmatch(value):
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


class JSONTexts(list[str]):
    """A list whose elements are JSON texts already (:func:`json_text`): compact
    :func:`json_chunks` writes them as they are, so an element encoded once can be reused::

        texts = JSONTexts(json_text(m) for m in memories)
        "".join(json_chunks({"memories": texts})) == json.dumps({"memories": memories}, ...)

    Only compact JSON knows it (``indent=None``), at most ``_SPLIT_DEPTH`` levels down.
    """


def json_text(obj: Any) -> str:
    """``obj`` as compact JSON, exactly as :func:`json_chunks` writes it."""
    return _COMPACT.encode(obj)


def json_chunks(obj: Any, *, indent: int | None = None) -> Iterator[str]:
    """``json.dumps(obj, indent=indent, ensure_ascii=False, default=str)``, piece by piece.

    Compact JSON (``indent=None``) splits the outer containers and encodes each element with
    the C encoder, so the text is identical to one ``json.dumps`` call but no single call runs
    long (a :class:`JSONTexts` list is written from its texts); indented JSON uses the standard
    library's incremental encoder.
    """
    if indent is not None:
        yield from json.JSONEncoder(indent=indent, ensure_ascii=False, default=str).iterencode(obj)
        return
    yield from _pieces(obj, _COMPACT, _SPLIT_DEPTH)


def _big(obj: Any, depth: int) -> bool:
    """Worth splitting: a list longer than a slice or already encoded, or a str-keyed dict
    holding one."""
    kind = type(obj)
    if kind is list or kind is tuple:
        return len(obj) > _SLICE or (depth > 0 and any(_big(v, depth - 1) for v in obj))
    if kind is dict and depth > 0 and all(type(k) is str for k in obj):
        return any(_big(v, depth - 1) for v in obj.values())
    return kind is JSONTexts


def _pieces(obj: Any, enc: json.JSONEncoder, depth: int) -> Iterator[str]:
    if type(obj) is JSONTexts:  # encoded already: a slice of texts per join, one copy each
        yield "["
        for start in range(0, len(obj), _TEXTS_SLICE):
            texts = obj[start : start + _TEXTS_SLICE]
            yield ", ".join(texts if start == 0 else ["", *texts])  # ", a, b": no prefix copy
        yield "]"
    elif not _big(obj, depth):  # small: one C call
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
        if len(piece) >= _BATCH_CHARS:  # a batch on its own: encoded without a join
            if buf:
                yield "".join(buf).encode("utf-8", "backslashreplace")
                buf, n = [], 0
            yield piece.encode("utf-8", "backslashreplace")
            continue
        buf.append(piece)
        n += len(piece)
        if n >= _BATCH_CHARS:
            yield "".join(buf).encode("utf-8", "backslashreplace")
            buf, n = [], 0
    if buf:  # a lone surrogate becomes the JSON escape "\ud800", never a lost write
        yield "".join(buf).encode("utf-8", "backslashreplace")


def atomic_write_json(
    path: Path,
    obj: Any,
    *,
    indent: int | None = 2,
    durable: bool = True,
    pace: Callable[[], None] | None = None,
) -> int:
    """Atomically write ``obj`` as UTF-8 JSON, encoded incrementally; returns the bytes written.

    ``pace``, when given, is called after each batch (~32 KiB) is written: a background
    writer pauses there to let other threads run."""
    chunks = _batches(json_chunks(obj, indent=indent))
    return atomic_write_chunks(
        path, chunks if pace is None else _paced(chunks, pace), durable=durable
    )


def _paced(chunks: Iterable[bytes], pace: Callable[[], None]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk
        pace()  # the chunk was written before the next one is asked for
