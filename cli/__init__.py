"""The `thuis` command line: the roof over every process and tool; nothing imports it."""
