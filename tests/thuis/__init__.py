"""Tests of the ground floor: thuis/."""
