"""The waterfall PNG: per utterance, each stage on a time axis, baseline beside streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voiced.bench.report import Row
from voiced.errors import UsageError

STREAM_STAGES = [("endpoint", "#9e9e9e"), ("asr_done", "#42a5f5"), ("first_token", "#ab47bc"),
                 ("first_clause", "#ffa726"), ("first_audio", "#66bb6a")]  # fmt: skip
BASE_STAGES = [("endpoint", "#9e9e9e"), ("asr_done", "#42a5f5"), ("reply_done", "#ab47bc"),
               ("first_audio", "#66bb6a")]  # fmt: skip


def write_plot(path: Path, rows: list[Row]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise UsageError("--plot needs matplotlib", fix="pip install 'voiced[bench]'") from err
    figure, axis = plt.subplots(figsize=(11, 0.55 * len(rows) * 2 + 1.5))
    labels: list[str] = []
    for index, row in enumerate(rows):
        y = index * 2
        _bars(axis, y, row.stream.stages_ms, STREAM_STAGES)
        if row.baseline is not None:
            _bars(axis, y + 0.5, row.baseline.stages_ms, BASE_STAGES, alpha=0.45)
        labels.append(row.utterance.text[:38])
    axis.set_yticks([i * 2 + 0.25 for i in range(len(rows))], labels, fontsize=8)
    axis.invert_yaxis()
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_xlabel("ms after the end of speech (solid: streaming; faint, below: the "
                    "sequential baseline)")  # fmt: skip
    from matplotlib.patches import Rectangle

    handles = [Rectangle((0, 0), 1, 1, color=c) for _, c in STREAM_STAGES + BASE_STAGES[2:3]]
    axis.legend(handles, [n for n, _ in STREAM_STAGES] + ["reply_done"], fontsize=8,
                loc="lower right")  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _bars(
    axis: Any, y: float, stages: dict[str, float], colours: list[tuple[str, str]],
    alpha: float = 1.0,
) -> None:
    start = 0.0
    for name, colour in colours:
        if name in stages:
            end = stages[name]
            axis.barh(y, max(end - start, 1.0), left=start, height=0.45, color=colour, alpha=alpha)
            start = end
