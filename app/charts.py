"""Altair charts of the leaderboard app: the ACC-vs-AUA trade-off, per-epoch curves
(analogues of the PEAFT paper's Figure 2) and the word-share robustness curves."""

from __future__ import annotations

import pandas as pd


def tradeoff_chart(points: pd.DataFrame):
    """Scatter of AUA (y) against ACC (x), both in %, one point per run.

    Args:
        points: a :func:`robustbench_nlp.app.queries.tradeoff_frame` frame.

    Returns:
        an ``altair.Chart``: colour = defense, shape = source (measured runs vs the paper's
        reported numbers, which are a separate series, never merged).
    """
    import altair as alt

    return alt.Chart(points).mark_point(size=80, filled=True).encode(
        x=alt.X("ACC:Q", title="clean accuracy ACC (%)", scale=alt.Scale(zero=False)),
        y=alt.Y("AUA:Q", title="accuracy under attack AUA (%)", scale=alt.Scale(zero=False)),
        color=alt.Color("defense:N"),
        shape=alt.Shape("source:N", title="source"),
        tooltip=["defense", "backbone", "source", "label", "ACC", "AUA"],
    ).properties(height=360)


def epoch_chart(curves: pd.DataFrame, metric: str = "AUA"):
    """Line chart of ``metric`` (``ACC`` or ``AUA``, %) over epochs, one line per run.

    Args:
        curves: a :func:`robustbench_nlp.app.queries.epoch_frame` frame.
        metric: which metric to draw.

    Raises:
        ValueError: ``metric`` is not ``ACC`` or ``AUA``.
    """
    import altair as alt

    if metric not in ("ACC", "AUA"):
        raise ValueError(f"metric must be 'ACC' or 'AUA', got {metric!r}")
    data = curves[curves["metric"] == metric]
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=f"{metric} (%)", scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title="run"),
        tooltip=["run", "epoch", "value"],
    ).properties(height=320)


def word_share_chart(curves: pd.DataFrame):
    """AUA (y, %) against the largest share of words the attack may change (x, %), one line
    per run, coloured by defense (the tooltip names the run's configuration and seed).

    Args:
        curves: a :func:`robustbench_nlp.app.queries.word_share_frame` frame.
    """
    import altair as alt

    return alt.Chart(curves).mark_line(point=True).encode(
        x=alt.X("share:Q", title="largest share of words the attack may change (%)"),
        y=alt.Y("AUA:Q", title="accuracy under attack AUA (%)"),
        color=alt.Color("defense:N", title="defense"),
        detail="run id:N",
        tooltip=["run", alt.Tooltip("share:Q", title="word share (%)"),
                 alt.Tooltip("AUA:Q", format=".2f")],
    ).properties(height=360)
