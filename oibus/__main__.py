"""``python -m oibus``: the ``oibus`` command, for environments without its entry point."""

from oibus.cli import main

if __name__ == "__main__":
    main()
