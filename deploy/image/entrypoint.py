#!/usr/bin/python3 -I
# The image's entry point. -I (isolated): no PYTHON* variable, user site or working directory
# can put other code before the job's pinned packages in /opt/batch-override/site.
import sys

sys.path.insert(0, "/opt/batch-override/site")

from batch_override.__main__ import main

sys.exit(main())
