"""CRM connectors: one module per CRM, all implementing connectors.base.Connector."""
