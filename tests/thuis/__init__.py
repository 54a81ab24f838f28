"""Tests of thuis (the ground)."""
