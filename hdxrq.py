#!/usr/bin/env python3
"""hdxrq command line: ``./hdxrq.py --help``.

Runs under the project's virtualenv (``.venv/``, made by ``./dev.sh``) whichever python3 started it.
"""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")

if __name__ == "__main__":
    venv_python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV) and os.path.exists(venv_python):
        os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    sys.path.insert(0, ROOT)
    from app.cli import main

    main()
