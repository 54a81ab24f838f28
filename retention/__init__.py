"""Retention: the worker applying the catalogue's policies, its report, the generated privacy document."""
