"""Privacy by design: personal fields at rest, coarse locations, research exports, data-subject rights."""
