"""``python -m gradts_cli``: the ``gradts`` command (what ``torchrun -m gradts_cli`` runs)."""

import sys

from gradts_cli.app import main

if __name__ == "__main__":
    sys.exit(main())
