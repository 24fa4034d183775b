"""The command line of validation, one module per sub-package: the harness's, the paper's and the sweeps'
commands, and what they share (common)."""
