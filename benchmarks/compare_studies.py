"""Whether two runs of a study wrote the same tables, timing and provenance aside.

    python benchmarks/compare_studies.py RESULTS_A RESULTS_B      # e.g. two results/default folders

For every CSV under ``tables/`` of both, the columns that depend on time (seconds, speed-ups, work-normalized
and equal-cost quantities, which multiply a variance by seconds) or on provenance (commit, config hash,
device name) are left out, and the rest compared cell by cell, exactly: the same code and seeds give the same
numbers. Prints one line per table (``equal``, or what differs) and exits 1 if any differs. Used to check that
a change meant to make the study faster left its answer alone.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.runtime.provenance import TEXT_DTYPES  # noqa: E402

TIME_OR_PROVENANCE = re.compile(r"seconds|speedup|work|cost|wall|git_commit|config_hash|device_name|timestamp")


def comparable(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=TEXT_DTYPES)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    return frame[[c for c in frame.columns if not TIME_OR_PROVENANCE.search(c)]]


def compare(a: Path, b: Path) -> dict[str, str]:
    out = {}
    names = sorted({p.name for p in (a / "tables").glob("*.csv")} | {p.name for p in (b / "tables").glob("*.csv")})
    for name in names:
        pa, pb = a / "tables" / name, b / "tables" / name
        if not (pa.exists() and pb.exists()):
            out[name] = f"only in {'A' if pa.exists() else 'B'}"
            continue
        fa, fb = comparable(pa), comparable(pb)
        if list(fa.columns) != list(fb.columns):
            out[name] = f"columns differ: {sorted(set(fa.columns) ^ set(fb.columns))}"
        elif len(fa) != len(fb):
            out[name] = f"rows differ: {len(fa)} against {len(fb)}"
        else:
            diff = [c for c in fa.columns if not fa[c].equals(fb[c])]
            out[name] = "equal" if not diff else f"values differ in {diff}"
    return out


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: compare_studies.py RESULTS_A RESULTS_B")
    result = compare(Path(args[0]), Path(args[1]))
    for name, verdict in result.items():
        print(f"{name:28s} {verdict}")
    return 0 if all(v == "equal" for v in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
