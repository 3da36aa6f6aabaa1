"""Local emulators of the CRM and conferencing APIs, for tests, demos and benchmarks."""
