"""What every job uses while it runs: atomic writes, checksummed checkpoints and result tables, devices,
seeds, stop requests, provenance, job timing, and the shared command line."""
