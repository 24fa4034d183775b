"""Sweeps: resumable grids of fastsim evaluations from a TOML config, their results log, executors
and plots. Built on the harness; imports nothing of ``paper``."""
