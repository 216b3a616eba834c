import sys

from kagglecv.cli import main

sys.exit(main())
