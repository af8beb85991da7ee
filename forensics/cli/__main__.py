"""`python -m forensics.cli`: the `forensics` command."""

import sys

from forensics.cli import main

sys.exit(main())
