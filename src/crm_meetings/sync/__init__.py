"""History sync: the engine, checkpoints, run claims and the APScheduler wiring."""
