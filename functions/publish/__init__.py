"""c2d: functions/publish."""
