"""Start the jobserver: `python server.py --help`."""

import sys

from jobserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
