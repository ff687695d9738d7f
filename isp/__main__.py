"""``python -m isp``: the same as the ``isp-sim`` command."""

from isp.cli import main

if __name__ == "__main__":
    main()
