"""``python -m bridges CONFIG.yaml`` is ``caproto-bridge CONFIG.yaml``."""
import sys

from bridges.cli import main

sys.exit(main())
