"""Tests of thuis."""
