"""Sub-commands of ``stowage``, one module each (discovered by ``stowage.cli``)."""
