"""``python -m widelimit``: the same command line as ``widelimit``."""

from widelimit.cli import main

if __name__ == "__main__":
    main()
