"""Sub-commands of ``stowage``, one module each (discovered by ``planner.cli``)."""
