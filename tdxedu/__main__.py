"""``python -m tdxedu`` runs the ``tdxedu`` console script."""

import sys

from tdxedu.cli import main

sys.exit(main())
