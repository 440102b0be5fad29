"""Snakemake script: every table as a small HTML page (shown inline in the report)."""
import html
import logging

import pandas as pd

from experiments.runtime import jobtime
from experiments.runtime.io import atomic_write_text
from experiments.runtime.provenance import TEXT_DTYPES

sm = snakemake  # noqa: F821  (injected by Snakemake)
jobtime.mark_started("tables_html")
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
MAX_ROWS = 2000  # the raw tables can be long; the CSV next to the HTML has every row

STYLE = ("<style>table{border-collapse:collapse;font:12px sans-serif}td,th{border:1px solid #ccc;"
         "padding:2px 6px;text-align:right}th{background:#eee}</style>")


def page(name: str, frame: pd.DataFrame) -> str:
    shown = frame.head(MAX_ROWS)
    note = f"<p>First {MAX_ROWS} of {len(frame)} rows; the CSV has all of them.</p>" if len(frame) > MAX_ROWS else ""
    table = shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
    return (f"<html><head><meta charset='utf-8'>{STYLE}<title>{html.escape(name)}</title></head><body>{note}"
            f"{table}</body></html>\n")


for name in sm.params.tables:
    frame = pd.read_csv(sm.input[name], dtype=TEXT_DTYPES)
    atomic_write_text(sm.output[name], page(name, frame))
    logging.info("wrote %s (%d rows)", sm.output[name], min(len(frame), MAX_ROWS))
