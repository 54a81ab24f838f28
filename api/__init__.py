"""The portal (FastAPI): built in the portal issue."""
