"""The single source of the package version (read by pyproject and ``oibus --version``)."""

__version__ = "0.1.0"
