import sys

from homecloud.devhost.main import main

sys.exit(main())
