import sys

from edgeline.cli import main

sys.exit(main())
