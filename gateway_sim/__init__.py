"""Simulated BeNext gateways and Maxem meters with realistic daily profiles."""
