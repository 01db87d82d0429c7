"""Calibration: does a confidence of 0.7 win 70 % of the time?

:func:`calibrate` bins confidences and compares each bin's mean confidence with its
realised win rate, and scores the whole with the Brier score (mean squared gap between
confidence and outcome, 0 is perfect) against a constant-confidence baseline (always
saying the overall win rate). :meth:`CalibrationReport.figure` draws the reliability
plot in plotly; :meth:`CalibrationReport.write_html` saves it (self-contained, offline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError
from memlab.memory.durable import atomic_write_bytes


def brier_score(confidence: np.ndarray, won: np.ndarray) -> float:
    """Mean of ``(confidence - won)**2``; lower is better, 0.25 is a coin flip at 0.5."""
    c = np.asarray(confidence, dtype=float)
    y = np.asarray(won, dtype=float)
    return float(np.mean((c - y) ** 2))


@dataclass(frozen=True)
class CalibrationReport:
    """Reliability table (one row per confidence bin) and the Brier scores."""

    table: pd.DataFrame
    brier: float
    baseline_brier: float
    base_rate: float
    n: int

    @property
    def skill(self) -> float:
        """Brier skill score: 1 - brier / baseline (above 0 beats the constant baseline)."""
        return 1.0 - self.brier / self.baseline_brier if self.baseline_brier > 0 else float("nan")

    def summary(self) -> str:
        return (
            f"{self.n} closed decisions: Brier {self.brier:.4f} vs constant {self.base_rate:.2f} "
            f"baseline {self.baseline_brier:.4f} (skill {self.skill:+.3f})"
        )

    def figure(self, title: str = "Agent calibration"):  # type: ignore[no-untyped-def]
        """Reliability plot: mean confidence vs realised win rate per bin, with counts."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        t = self.table[self.table["count"] > 0]
        fig = make_subplots(specs=[[{"secondary_y": True}]])
        fig.add_trace(
            go.Bar(x=t["mean_confidence"], y=t["count"], name="decisions", opacity=0.25, width=0.08),
            secondary_y=True,
        )
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash"}))
        fig.add_trace(
            go.Scatter(
                x=t["mean_confidence"],
                y=t["win_rate"],
                mode="lines+markers",
                name="agent",
                text=[f"{int(c)} decisions" for c in t["count"]],
            )
        )
        fig.update_layout(
            title=f"{title}: {self.summary()}",
            xaxis_title="confidence",
            yaxis_title="realised win rate",
            xaxis_range=[0, 1],
            yaxis_range=[0, 1],
        )
        fig.update_yaxes(title_text="decisions", secondary_y=True)
        return fig

    def write_html(self, path: Path, title: str = "Agent calibration") -> Path:
        """The reliability plot and table as one self-contained HTML file (no network needed)."""
        fig = self.figure(title)
        body = fig.to_html(include_plotlyjs=True, full_html=False)
        table = self.table.to_html(float_format=lambda x: f"{x:.3f}")
        html = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>{self.summary()}</p>{body}{table}</body></html>"
        )
        path = Path(path)
        atomic_write_bytes(path, html.encode())
        return path


def calibrate(
    confidence: np.ndarray | pd.Series,
    won: np.ndarray | pd.Series,
    *,
    bins: int = 10,
    baseline: float | None = None,
) -> CalibrationReport:
    """Calibration of ``confidence`` (0..1) against outcomes ``won`` (bool).

    The baseline always says ``baseline`` (default: the realised win rate of these very
    decisions, the best any constant can do in hindsight).

    >>> r = calibrate(np.array([0.8, 0.8, 0.2, 0.2]), np.array([True, True, False, False]))
    >>> round(r.brier, 2), round(r.baseline_brier, 2)
    (0.04, 0.25)
    """
    c = np.asarray(confidence, dtype=float)
    y = np.asarray(won, dtype=bool)
    if len(c) != len(y):
        raise InvalidInputError(f"{len(c)} confidences but {len(y)} outcomes")
    if len(c) == 0:
        raise InvalidInputError("no closed decisions to calibrate against yet")
    if np.any((c < 0) | (c > 1) | ~np.isfinite(c)):
        raise InvalidInputError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(c, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "confidence": c, "won": y.astype(float)})
    grouped = frame.groupby("bin").agg(
        count=("won", "size"), mean_confidence=("confidence", "mean"), win_rate=("won", "mean")
    )
    table = grouped.reindex(range(bins))
    table["count"] = table["count"].fillna(0).astype(int)
    table.index = pd.Index([f"{edges[i]:.1f}-{edges[i + 1]:.1f}" for i in range(bins)], name="confidence bin")
    base = float(y.mean()) if baseline is None else float(baseline)
    return CalibrationReport(
        table=table,
        brier=brier_score(c, y),
        baseline_brier=brier_score(np.full(len(y), base), y),
        base_rate=base,
        n=len(y),
    )
