"""Personal fields at rest: the keyring, a data key per data subject, and sealed fields."""
