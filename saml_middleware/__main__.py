"""`python -m saml_middleware ...`: the same as the `saml-middleware` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
