"""The exact solvers ``exact`` and ``exact-mip``, one job per module:

* ``joint_data`` -- the instance (priced by ``solvers.costs``), solutions and their checks;
* ``joint_model`` (CP-SAT), ``joint_mip`` (PuLP), ``residency_model`` (the gap model for a
  fixed order) -- the models;
* ``cover_bound`` -- the crossing-cover and chain-cut lower bounds;
* ``params`` -- the two solvers' parameters; ``orders`` -- starting orders and order moves;
  ``warm_start`` -- solutions from other planners; ``pack`` -- addresses for a residency;
  ``lower`` -- solution to plan, with an honest status;
* ``auto`` -- the bound-and-pack pipeline of mode ``auto`` (a phase table);
* ``pipeline`` -- the one-shot modes and the registration of both solvers.
"""
