"""`python3 -m flask_example`: check the environment the way the server will read it.

entrypoint.sh runs this before starting gunicorn, so a bad setting stops the container with
one line naming the variable and the fix, and exit status 2.
"""

import sys

from flask_example.settings import main

sys.exit(main())
