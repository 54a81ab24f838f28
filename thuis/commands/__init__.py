"""Subcommands of the `thuis` command line that belong to no single process."""
