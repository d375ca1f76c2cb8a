"""`python -m mixer_edge.cli ...`: the same as `mixer-edge ...` (torchrun launches itself this way)."""
import sys

from . import main

sys.exit(main())
