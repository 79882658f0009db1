"""What changed in memory between two snapshots, as data and as a readable table.

    from coda_otel.snapshots.diff import diff_snapshots, format_diff_table

    diff = diff_snapshots(store.load(a), store.load(b))
    diff["new_memories"]          # memories in b, not in a (full records)
    diff["removed_memories"]      # memories in a, not in b
    diff["changed_memories"]      # [{"id", "changes": {"content": {"before", "after"}, ...}}]
    print(format_diff_table(diff))

Memories are matched by ``id``; turns by ``turn_id`` (or role, content and timestamp when a turn
has no id), so a sliding short-term window reports the turns that really arrived, not just the
change in length. The count keys (``short_term.turn_count_diff``, ``turns_added``,
``long_term.memory_count_diff``, ``topic_count_diff``) are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Fields of a long-term memory whose change is reported.
CHANGE_FIELDS: tuple[str, ...] = ("content", "importance", "topics")
_CELL = 60


def _section(snapshot: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if not isinstance(snapshot, Mapping):
        raise ValueError(f"a snapshot must be a JSON object, got {type(snapshot).__name__}")
    section = snapshot.get(name)
    if not isinstance(section, Mapping):
        sid = snapshot.get("snapshot_id", "?")
        raise ValueError(f"snapshot {sid!r} has no {name!r} object")
    return section


def _items(section: Mapping[str, Any], key: str) -> list[Any]:
    value = section.get(key) or []
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ValueError(f"snapshot field {key!r} must be a list")
    return list(value)


def _count(section: Mapping[str, Any], key: str, items: list[Any]) -> int:
    value = section.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else len(items)


def _memory_key(memory: Any) -> str:
    if isinstance(memory, Mapping) and memory.get("id") is not None:
        return str(memory["id"])
    content = memory.get("content") if isinstance(memory, Mapping) else memory
    return f"content:{content}"


def _turn_key(turn: Any) -> str:
    if isinstance(turn, Mapping):
        if turn.get("turn_id") is not None:
            return f"id:{turn['turn_id']}"
        return f"{turn.get('role')}|{turn.get('timestamp')}|{turn.get('content')}"
    return f"raw:{turn}"


def diff_snapshots(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that changed from snapshot ``a`` (older) to snapshot ``b`` (newer).

    Raises :class:`ValueError` when either lacks ``short_term``/``long_term``.
    """
    st_a, st_b = _section(a, "short_term"), _section(b, "short_term")
    lt_a, lt_b = _section(a, "long_term"), _section(b, "long_term")
    turns_a, turns_b = _items(st_a, "turns"), _items(st_b, "turns")
    mems_a, mems_b = _items(lt_a, "memories"), _items(lt_b, "memories")
    topics_a, topics_b = _items(lt_a, "topics"), _items(lt_b, "topics")

    by_id_a = {_memory_key(m): m for m in mems_a}
    by_id_b = {_memory_key(m): m for m in mems_b}
    new_memories = [m for k, m in by_id_b.items() if k not in by_id_a]
    removed_memories = [m for k, m in by_id_a.items() if k not in by_id_b]
    changed: list[dict[str, Any]] = []
    for key, after in by_id_b.items():
        before = by_id_a.get(key)
        if before is None or not isinstance(before, Mapping) or not isinstance(after, Mapping):
            continue
        changes = {
            field: {"before": before.get(field), "after": after.get(field)}
            for field in CHANGE_FIELDS
            if before.get(field) != after.get(field)
        }
        if changes:
            changed.append({"id": after.get("id", key), "changes": changes})

    keys_a = {_turn_key(t) for t in turns_a}
    keys_b = {_turn_key(t) for t in turns_b}
    new_turns = [t for t in turns_b if _turn_key(t) not in keys_a]
    set_a, set_b = {str(t) for t in topics_a}, {str(t) for t in topics_b}
    counts = {
        "turn_count": (_count(st_a, "turn_count", turns_a), _count(st_b, "turn_count", turns_b)),
        "memory_count": (
            _count(lt_a, "memory_count", mems_a),
            _count(lt_b, "memory_count", mems_b),
        ),
        "topic_count": (len(set_a), len(set_b)),
    }
    return {
        "snapshot_id1": a.get("snapshot_id"),
        "snapshot_id2": b.get("snapshot_id"),
        "timestamp1": a.get("timestamp"),
        "timestamp2": b.get("timestamp"),
        "summary": {k: {"before": v[0], "after": v[1]} for k, v in counts.items()},
        "short_term": {
            "turn_count_diff": counts["turn_count"][1] - counts["turn_count"][0],
            "turns_added": len(new_turns),
            "turns_removed": sum(1 for t in turns_a if _turn_key(t) not in keys_b),
        },
        "long_term": {
            "memory_count_diff": counts["memory_count"][1] - counts["memory_count"][0],
            "topic_count_diff": len(set_b) - len(set_a),
        },
        "new_memories": new_memories,
        "removed_memories": removed_memories,
        "changed_memories": changed,
        "topics_added": sorted(set_b - set_a),
        "topics_removed": sorted(set_a - set_b),
        "new_turns": new_turns,
    }


def _cell(value: Any, width: int = _CELL) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _memory_rows(title: str, memories: list[Any]) -> list[str]:
    if not memories:
        return []
    lines = [f"{title} ({len(memories)})", f"  {'ID':<24} {'IMPORTANCE':>10}  CONTENT"]
    for m in memories:
        m = m if isinstance(m, Mapping) else {"content": m}
        imp = m.get("importance")
        imp_s = f"{imp:.2f}" if isinstance(imp, int | float) else str(imp or "-")
        lines.append(f"  {_cell(m.get('id', '-'), 24):<24} {imp_s:>10}  {_cell(m.get('content'))}")
    return [*lines, ""]


def format_diff_table(diff: Mapping[str, Any]) -> str:
    """A plain-text report of :func:`diff_snapshots` output, for terminals."""
    lines = [
        f"{diff.get('snapshot_id1')} ({diff.get('timestamp1')})",
        f"  -> {diff.get('snapshot_id2')} ({diff.get('timestamp2')})",
        "",
        f"  {'':<14} {'BEFORE':>8} {'AFTER':>8} {'CHANGE':>8}",
    ]
    labels = {"turn_count": "turns", "memory_count": "memories", "topic_count": "topics"}
    for key, label in labels.items():
        row = diff.get("summary", {}).get(key, {})
        before, after = row.get("before", 0), row.get("after", 0)
        lines.append(f"  {label:<14} {before:>8} {after:>8} {after - before:>+8}")
    lines.append("")
    header_len = len(lines)
    lines += _memory_rows("Memories added", list(diff.get("new_memories", [])))
    lines += _memory_rows("Memories removed", list(diff.get("removed_memories", [])))
    changed = list(diff.get("changed_memories", []))
    if changed:
        lines.append(f"Memories changed ({len(changed)})")
        for item in changed:
            lines.append(f"  {_cell(item.get('id'), 24)}")
            for field, ch in item.get("changes", {}).items():
                before, after = _cell(ch.get("before"), 30), _cell(ch.get("after"), 30)
                lines.append(f"    {field:<11} {before} -> {after}")
        lines.append("")
    for key, title in (("topics_added", "Topics added"), ("topics_removed", "Topics removed")):
        if diff.get(key):
            lines.append(f"{title}: {', '.join(map(str, diff[key]))}")
    turns = list(diff.get("new_turns", []))
    if turns:
        lines.append(f"Turns added ({len(turns)})")
        for t in turns:
            t = t if isinstance(t, Mapping) else {"content": t}
            lines.append(f"  {_cell(t.get('role', '-'), 10):<10} {_cell(t.get('content'))}")
    if len(lines) == header_len:
        lines.append("No memory, topic or turn changes.")
    return "\n".join(lines).rstrip() + "\n"
