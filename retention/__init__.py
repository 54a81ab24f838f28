"""The retention worker: built in the retention issue."""
