"""``python -m bayesperf``: the command line."""

from bayesperf.cli import main

raise SystemExit(main())
