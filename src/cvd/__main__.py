import sys

from cvd.cli import main

sys.exit(main())
