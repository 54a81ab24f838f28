"""Every SQL statement of the portal, one module per domain. Values are bound, never formatted in."""
