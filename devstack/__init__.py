"""c2d: devstack."""
