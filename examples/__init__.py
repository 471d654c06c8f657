"""Runnable examples (each is a script: ``python examples/<name>.py``). Installed as
``oibus.examples`` so that ``oibus demo`` can run them."""
