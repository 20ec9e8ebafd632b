"""c2d: functions/notify."""
