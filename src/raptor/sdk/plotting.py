"""``Feature.plot()``: a replayed feature over time, one line per entity (matplotlib, optional).

matplotlib is imported here only, on first use; without it the error says which extra to
install (``raptor[plot]``). With several value columns (``+sum``, ``+count``...) each gets its
own subplot. Returns the matplotlib Axes (or array of Axes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from raptor.sdk.features import Feature

__all__ = ["plot_feature"]


def plot_feature(
    feature: Feature, frame: pd.DataFrame | None = None, *, entities: int = 5, ax: Any = None
) -> Any:
    """Plot ``frame`` (default: ``feature.replay()``) for the ``entities`` busiest entities."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plot() needs matplotlib: pip install 'raptor[plot]'") from exc
    data = feature.replay() if frame is None else frame
    columns = [c for c in feature.columns() if c in data.columns]
    if not columns:
        raise ValueError(f"the frame has none of {feature.name}'s value columns")
    keys = list(feature.keys)
    if ax is None:
        _, ax = plt.subplots(
            len(columns), 1, sharex=True, squeeze=False, figsize=(9, 2.6 * len(columns))
        )
        axes = list(ax[:, 0])
    else:
        axes = [ax] if not hasattr(ax, "__len__") else list(ax)
    if keys:
        by: Any = keys[0] if len(keys) == 1 else keys
        top = set(data.groupby(by, sort=False).size().nlargest(entities).index)
        groups = [(k, g) for k, g in data.groupby(by, sort=False) if k in top]
    else:
        groups = [("all", data)]
    for col, axis in zip(columns, axes, strict=False):
        for key, group in groups:
            label = "/".join(map(str, key)) if isinstance(key, tuple) else str(key)
            axis.step(group["timestamp"], group[col], where="post", label=label)
        axis.set_ylabel(col)
        axis.grid(True, alpha=0.3)
    axes[0].set_title(feature.describe())
    if keys:
        axes[0].legend(loc="best", fontsize="small")
    return axes[0] if len(axes) == 1 else axes
