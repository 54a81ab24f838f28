"""Tests of gateway_sim."""
