"""What a study asks for, checked before any job runs: the config and its schema, typed settings, estimator
entries, the user's modules, and the plan (every job, its output folder, and the declared comparisons)."""
