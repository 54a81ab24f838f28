"""Run the `thuis` command line with `python -m thuis`."""

import sys

from thuis.cli import main

sys.exit(main())
