"""Sleep far longer than the job may run (60 s against a 3 s limit)."""

import time

print("sleeping for 60 s", flush=True)
time.sleep(60)
print("woke up (this line is never reached under a 3 s limit)")
