import sys

from cloud.portal.cli import main

sys.exit(main())
