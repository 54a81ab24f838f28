"""Research exports: what a researcher may ask for, and the anonymised archive they receive."""
