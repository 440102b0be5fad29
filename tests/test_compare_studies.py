"""benchmarks/compare_studies.py tells equal tables (timing and provenance aside) from different ones."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("compare_studies", ROOT / "benchmarks" / "compare_studies.py")
compare_studies = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_studies)


def _study(folder: Path, variance: float, seconds: float, commit: str) -> Path:
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame({"estimator_id": ["a", "b"], "total_variance": [1.5, variance], "seconds_per_estimate": [seconds] * 2,
                  "work_normalized_variance": [seconds, seconds], "git_commit": [commit] * 2}).to_csv(
        folder / "tables" / "synthetic_all.csv", index=False)
    return folder


def test_timing_and_provenance_aside_equal_tables_are_equal(tmp_path):
    a = _study(tmp_path / "a", 2.0, 0.1, "g000000000001")
    b = _study(tmp_path / "b", 2.0, 0.3, "g000000000002")
    assert compare_studies.compare(a, b) == {"synthetic_all.csv": "equal"}


def test_a_changed_number_is_found(tmp_path):
    a = _study(tmp_path / "a", 2.0, 0.1, "g1")
    b = _study(tmp_path / "b", 2.0000001, 0.1, "g1")
    assert compare_studies.compare(a, b) == {"synthetic_all.csv": "values differ in ['total_variance']"}
    assert compare_studies.main([str(a), str(b)]) == 1
