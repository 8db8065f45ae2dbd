"""`python -m lib …` runs the command-line interface."""

import sys

from lib.cli import main

sys.exit(main())
