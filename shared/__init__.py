"""c2d: shared."""
