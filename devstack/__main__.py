"""`python -m devstack ...` is the `c2d` command (for environments without the script)."""

import sys

from devstack.cli import main

sys.exit(main())
