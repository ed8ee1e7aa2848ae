"""``python -m devstack up|down|status|env``."""

from __future__ import annotations

import sys

from devstack.commands import main

sys.exit(main())
