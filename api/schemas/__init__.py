"""The portal's request and response bodies, as they appear in the OpenAPI document."""
