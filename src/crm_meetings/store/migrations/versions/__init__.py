"""Migration scripts, one per revision, oldest first: ``0001_initial`` and onwards."""
