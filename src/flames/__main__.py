"""The `flames` command (and ``python -m flames``).

Ctrl-C and SIGTERM are handled from the first moment: a signal while the command line's
modules load is noted, and acted on once they are loaded, so it ends in one line and exit
code 130 (143 for SIGTERM) too, never a traceback.
"""

from __future__ import annotations

import sys

from flames._util import interrupt


def main() -> None:
    """Run the command line."""
    interrupt.defer()  # a signal while the modules load is acted on once they are loaded
    from flames.cli import main as cli_main

    if interrupt.resume(program=True):
        sys.stderr.write("interrupted before the command started: nothing was written.\n")
        interrupt.finish(interrupt.exit_code())
    try:
        cli_main()
    except SystemExit as exc:
        interrupt.ending(exc.code)
        raise
    interrupt.ending(0)


if __name__ == "__main__":
    main()
