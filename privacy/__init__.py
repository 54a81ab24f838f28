"""Privacy by design: personal fields at rest (keys/), coarse locations, research exports, data-subject rights."""
