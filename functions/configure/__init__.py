"""c2d: functions/configure."""
