"""The paper's experiments: Table 2, Figures 3/4, the replication's configuration, the horizon check,
the deeper networks' table and the main job (``reproduce``) with its publication. Built on the harness."""
