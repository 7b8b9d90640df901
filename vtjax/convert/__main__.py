"""Entry point of ``python -m vtjax.convert``."""

import sys

from vtjax.convert.cli import main

sys.exit(main())
