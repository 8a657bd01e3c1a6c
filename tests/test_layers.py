"""The layers, checked statically. The engine does not depend on Starlette: only the ASGI
adapter (and authz.py, for FastAPI) import it, so `SAMLUser` and the engine serve a WSGI app
unchanged. pysaml2 stays behind the protocol layer: only saml/ (and the development IdP)
import `saml2`, so the rest of the middleware never sees its objects."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "saml_middleware"
# The ASGI adapter and FastAPI's dependencies; the CLI and the development IdP are apps.
MAY_IMPORT_STARLETTE = {"asgi.py", "authz.py", "cli", "devidp"}
MAY_IMPORT_SAML2 = {"saml", "devidp"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_asgi_adapter_and_authz_import_starlette():
    importing = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in MAY_IMPORT_STARLETTE
        and "starlette" in _imports(path)
    )
    assert importing == []


def test_only_the_protocol_layer_and_the_development_idp_import_saml2():
    importing = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in MAY_IMPORT_SAML2 and "saml2" in _imports(path)
    )
    assert importing == []
