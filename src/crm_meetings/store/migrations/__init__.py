"""Alembic migrations of the store; run them through :mod:`crm_meetings.store.migrate`."""
