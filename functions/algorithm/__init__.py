"""c2d: functions/algorithm."""
