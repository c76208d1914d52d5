"""One cell format for the evaluation tables (``ella-v evaluate``'s summary, the model cards', the codec ablation's)."""

from __future__ import annotations


def format_cell(value: float | None, percent: bool = False, std: float | None = None, digits: int = 3) -> str:
    """A Markdown table cell.

    Args:
        value: the number; ``None`` (not measured) prints "–".
        percent: a rate in [0, 1], printed as a percentage with one decimal.
        std: the spread over seeds of a rate; printed as "mean ± std %".
        digits: decimals of a plain number.
    """
    if value is None:
        return "–"
    if std is not None:
        return f"{100 * value:.1f} ± {100 * std:.1f} %"
    return f"{100 * value:.1f} %" if percent else f"{value:.{digits}f}"
