"""``python -m testio_sync``: the same command line as ``testio-sync``."""

from testio_sync.cli import main

if __name__ == "__main__":
    main()
