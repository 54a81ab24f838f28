"""Data subjects' rights: requests and their trail, what completing one does, erasure, access exports."""
