"""PyInstaller entry point of the medtrans-app bundle (the same main() as the console script)."""

import sys

from medtrans_app.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
