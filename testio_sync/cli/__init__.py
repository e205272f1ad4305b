"""The ``testio-sync`` command line: one module per command group, registered in ``app``."""

from testio_sync.cli.app import app, main

__all__ = ["app", "main"]
