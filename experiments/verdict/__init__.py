"""The answer, from the jobs' tidy tables: the verdict on the claim, the aggregated tables, figures, the
findings in words, the estimator ranking, and the committed snapshot."""
