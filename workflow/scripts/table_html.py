"""Snakemake script: one table as a small HTML page (shown inline in the report)."""
import html
import logging

import pandas as pd

from experiments import jobtime
from experiments.io import atomic_write_text
from experiments.provenance import TEXT_DTYPES

sm = snakemake  # noqa: F821  (injected by Snakemake)
jobtime.mark_started("table_html")
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
MAX_ROWS = 2000  # the raw tables can be long; the CSV next to the HTML has every row

frame = pd.read_csv(sm.input.table, dtype=TEXT_DTYPES)
shown = frame.head(MAX_ROWS)
note = f"<p>First {MAX_ROWS} of {len(frame)} rows; the CSV has all of them.</p>" if len(frame) > MAX_ROWS else ""
style = ("<style>table{border-collapse:collapse;font:12px sans-serif}td,th{border:1px solid #ccc;"
         "padding:2px 6px;text-align:right}th{background:#eee}</style>")
atomic_write_text(sm.output.html, f"<html><head><meta charset='utf-8'>{style}<title>{html.escape(sm.wildcards.table)}"
                  f"</title></head><body>{note}{shown.to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='')}"
                  f"</body></html>\n")
logging.info("wrote %s (%d rows)", sm.output.html, len(shown))
