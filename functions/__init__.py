"""c2d: functions."""
