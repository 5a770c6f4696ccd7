"""`python -m monitor` is `mgs-monitor`."""

import sys

from monitor.cli import main

sys.exit(main())
