"""``python -m fitting.service --results URI``."""

import sys

from fitting.service.server import main

sys.exit(main())
