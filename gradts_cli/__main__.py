"""``python -m gradts_cli``: the ``gradts`` command (what ``torchrun -m gradts_cli`` runs)."""

from gradts_cli.app import run

if __name__ == "__main__":
    run()
