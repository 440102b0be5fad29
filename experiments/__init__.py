"""gradvar experiments: synthetic problems with exact gradients, and VAEs on real data."""
