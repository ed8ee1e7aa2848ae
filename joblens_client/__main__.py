"""``python -m joblens_client``: the terminal client without the service's own commands."""

import sys

from joblens_client.terminal import main

sys.exit(main())
