"""The portal's API routes, one module per audience."""
