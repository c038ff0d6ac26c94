#!/usr/bin/env python3
"""hdxrq command line: ``./hdxrq.py --help``.

Started by a plain python3 on a development machine, it runs itself again under the project's
virtualenv (``.venv/``, made by ``./dev.sh``). An interpreter that is already a virtualenv's (the image's
``/opt/venv``, an activated one, ``.venv`` itself) is used as it is, and a ``.venv`` made on another
machine (copied in with the source) is never entered.
"""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")


def venv_to_enter() -> str | None:
    """The ``.venv`` interpreter this process should re-exec under, or None to go on as it is."""
    if sys.prefix != sys.base_prefix:
        return None
    python = os.path.join(VENV, "bin", "python")
    if not os.access(python, os.X_OK):
        return None
    return python if _venv_home_exists(os.path.join(VENV, "pyvenv.cfg")) else None


def _venv_home_exists(config: str) -> bool:
    """Whether the interpreter ``.venv`` was made from (``home`` in ``pyvenv.cfg``) is on this machine."""
    try:
        with open(config, encoding="utf-8") as lines:
            pairs = [line.partition("=") for line in lines]
    except OSError:
        return False
    homes = [value.strip() for key, _, value in pairs if key.strip() == "home"]
    return bool(homes) and os.path.isdir(homes[0])


if __name__ == "__main__":
    venv_python = venv_to_enter()
    if venv_python:
        os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    sys.path.insert(0, ROOT)
    from app.cli import main

    main()
