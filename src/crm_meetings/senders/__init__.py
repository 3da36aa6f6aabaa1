"""Organisation sender addresses: confirmation, profiles, replacement on delete."""
