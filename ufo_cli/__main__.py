"""`python -m ufo_cli ...` runs the `ufo` command."""

import sys

from ufo_cli.main import main

sys.exit(main())
