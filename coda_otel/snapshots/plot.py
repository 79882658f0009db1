"""Memory evolution as a picture: turns, memories and topics over the snapshots (PNG).

    from coda_otel.snapshots.plot import plot_snapshots
    from coda_otel.snapshots.store import SnapshotStore

    plot_snapshots(SnapshotStore(folder).list(), Path("memory.png"))

Needs the ``plot`` extra (matplotlib). Uses matplotlib's object API with the Agg canvas, so it
never opens a window and never touches pyplot's global state. Clear, import and export
snapshots are marked with a dotted vertical line. The file is written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from coda_otel.files import atomic_write_bytes
from coda_otel.snapshots.store import SnapshotInfo

_MARKED_TRIGGERS = {"clear": "tab:red", "import": "tab:green", "export": "tab:purple"}


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def plot_snapshots(infos: Sequence[SnapshotInfo], out: Path, *, title: str | None = None) -> Path:
    """Draw counts over ``infos`` (oldest first) into PNG file ``out``; returns ``out``.

    Raises :class:`ValueError` when no readable snapshot is given and
    :class:`PlotUnavailableError` when matplotlib is missing.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailableError(
            "plotting needs matplotlib: pip install 'coda-lite[plot]'"
        ) from exc
    readable = [i for i in infos if i.error is None]
    if not readable:
        raise ValueError("no readable snapshots to plot")
    xs = list(range(len(readable)))

    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    counts_ax, topics_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    counts_ax.plot(xs, [i.turn_count or 0 for i in readable], marker="o", label="short-term turns")
    counts_ax.plot(
        xs, [i.memory_count or 0 for i in readable], marker="s", label="long-term memories"
    )
    counts_ax.set_ylabel("items")
    counts_ax.legend(loc="upper left")
    topics_ax.plot(xs, [i.topic_count or 0 for i in readable], color="tab:orange", marker="^")
    topics_ax.set_ylabel("topics")
    for x, info in zip(xs, readable, strict=True):
        color = _MARKED_TRIGGERS.get(info.trigger or "")
        if color:
            for ax in (counts_ax, topics_ax):
                ax.axvline(x, color=color, linestyle=":", linewidth=1)
            counts_ax.annotate(info.trigger or "", (x, 0), xycoords=("data", "axes fraction"),
                               xytext=(3, 4), textcoords="offset points", color=color,
                               fontsize=8, rotation=90, va="bottom")  # fmt: skip
    step = max(1, len(readable) // 10)
    topics_ax.set_xticks(xs[::step])
    topics_ax.set_xticklabels([i.timestamp[5:19] for i in readable][::step], rotation=30,
                              ha="right", fontsize=8)  # fmt: skip
    topics_ax.set_xlabel("snapshot time (UTC)")
    counts_ax.set_title(title or f"Memory evolution over {len(readable)} snapshots")
    for ax in (counts_ax, topics_ax):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.tight_layout()

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(out, buf.getvalue())
    return out
