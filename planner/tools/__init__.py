"""Tools built on the solvers: solver comparison reports (``report``) and design-space sweeps
(``sweep``, ``sweep_report``)."""
