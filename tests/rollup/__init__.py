"""Tests of rollup."""
