import sys

from vesselzip.cli import main

sys.exit(main())
