"""The agreement harness: engines behind one call, the comparisons of two engines' records, the NIR
conformance of third-party libraries and the per-layer diagnosis. Imports neither ``paper`` nor ``grid``."""
