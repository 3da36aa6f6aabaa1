"""The contact map: my and firm-wide contacts, companies, types and partners."""
