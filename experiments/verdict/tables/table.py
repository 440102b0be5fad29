"""One table of a study, as the module that makes it declares it: its name, its caption, how a reader sees it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


def every_column(frame: pd.DataFrame) -> str:
    """The whole table as markdown, numbers to 4 significant digits."""
    return frame.to_markdown(index=False, floatfmt=".4g") if not frame.empty else "(empty)\n"


@dataclass(frozen=True)
class Table:
    """``name``: the table's file under ``results/STUDY/tables`` (``NAME.csv``, ``NAME.html``, and ``NAME.md``
    and ``NAME.tex`` where the aggregate rule asks for them); ``caption``: what the report shows with it
    (``results/README.md`` documents every column); ``markdown``: its rendering for a reader."""

    name: str
    caption: str
    markdown: Callable[[pd.DataFrame], str] = every_column

    @staticmethod
    def latex(frame: pd.DataFrame) -> str:
        return frame.to_latex(index=False, float_format="%.4g") if not frame.empty else "% empty\n"
