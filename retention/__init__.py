"""Retention: the catalogue of data categories (policies.toml), its checks, and the retention worker."""
