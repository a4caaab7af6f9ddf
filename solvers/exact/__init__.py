"""The exact solvers ``exact`` and ``exact-mip``: the instance (``joint_data``), the CP-SAT
model (``joint_model``), the MIP (``joint_mip``), the residency model, the cover and chain
bounds, and the pipeline that runs them (``pipeline``)."""
