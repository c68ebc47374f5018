"""The ``feed-monitor`` command, and ``python -m monitor``.

Small on purpose. multiprocessing starts each extraction worker by re-running
the command's script (as ``__mp_main__``), and that script imports this
module. Were it ``monitor.cli``, every worker would import the whole CLI
(pydantic, redis, the rule engine) that it never uses: about 19 MB per
worker, and 0.2 s of CPU at each worker restart.
"""

from __future__ import annotations

import sys


def main() -> int:
    from monitor.cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
