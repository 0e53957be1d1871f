import sys

from sinks.cli import main

sys.exit(main())
