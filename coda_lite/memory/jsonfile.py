"""JSON files for memory export/import: atomic writes, reads with errors that name the file.

write_json_atomic(Path("memory.json"), {"version": 1, "memories": [...]})
data = read_json(Path("memory.json"))     # MemoryStoreError if missing or not JSON
private_file(Path("memory.sqlite3"))       # exists, 0600, in a 0700 folder (conversation data)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class MemoryStoreError(RuntimeError):
    """The memory database cannot be used (closed, unreadable, bad import file)."""


def write_json_atomic(path: Path, obj: Any) -> None:
    """Readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def private_file(path: Path) -> None:
    """Create ``path`` (if missing) readable by its owner only; a new folder is 0700.

    Conversation data (the memory database, exports) must not be world-readable; an existing
    file is tightened too (an existing folder is left alone: it may be shared, like /tmp).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MemoryStoreError(f"memory import file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise MemoryStoreError(f"memory import file {path} is not readable JSON: {exc}") from None
