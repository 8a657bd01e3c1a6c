"""`python -m examples.django_project`: the example with the development IdP (NOT FOR PRODUCTION).

The SQLite database lives in a temporary directory removed at exit, unless
DJANGO_EXAMPLE_DB names a file to keep.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

PROTECTED_PATHS = ("/profile", "/admin")


def build(saml_settings: Mapping[str, Any]) -> tuple[Any, Any]:
    from .wsgi import make_application

    app = make_application(saml_settings)
    return app, app.engine


def main(argv: Sequence[str] | None = None) -> int:
    try:
        import django
    except ImportError:
        print("python -m examples.django_project: error: pip install django", file=sys.stderr)
        return 1
    from django.core.management import call_command

    from examples.devserver import run

    temp_dir = None
    if not os.environ.get("DJANGO_EXAMPLE_DB"):
        temp_dir = tempfile.mkdtemp(prefix="saml-django-example-")
        os.environ["DJANGO_EXAMPLE_DB"] = os.path.join(temp_dir, "db.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    try:
        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        return run("django_project", build, "wsgi", protect=PROTECTED_PATHS, argv=argv)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
