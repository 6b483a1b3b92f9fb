"""The `flames` command (and ``python -m flames``).

Ctrl-C and SIGTERM are handled from the first moment: the command line's modules are imported
only after the handler is in place, so an interruption while they load ends in one line and
exit code 130 (143 for SIGTERM) too, never a traceback.
"""

from __future__ import annotations

import sys

from flames._util import interrupt


def main() -> None:
    """Run the command line."""
    interrupt.install(program=True)
    try:
        from flames.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted before the command started: nothing was written.\n")
        interrupt.finish(interrupt.exit_code())
    cli_main()


if __name__ == "__main__":
    main()
