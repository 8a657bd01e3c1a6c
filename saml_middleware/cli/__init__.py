"""The `saml-middleware` command line (also `python -m saml_middleware`).

    saml-middleware keygen [--out-dir DIR] [--kind rsa|ec] [--bits N] [--days N]
                           [--common-name CN] [--force]
    saml-middleware metadata --settings SPEC [--tenant SLUG]
    saml-middleware check --settings SPEC
    saml-middleware diagnose --settings SPEC [--tenant SLUG] --response FILE|-
                             [--at ISO-TIME] [--request-id ID] [--json]
    saml-middleware demo [--host 127.0.0.1] [--port 8000]
    saml-middleware dev-idp [--host 127.0.0.1] [--port 9000] [--users FILE.json]
                            [--sp-metadata FILE_OR_URL ...]

`keygen` makes the SP's signing/encryption key and self-signed certificate.
`metadata` prints the SP metadata an IdP admin uploads (stdout holds only the
XML, so it can be redirected to a file). `check` is the step before deploying:
it validates the settings, reads the IdP metadata as the middleware would, and
prints what to paste into the IdP and every problem, one line each naming the
setting key; exit status 1 when any is an error. `diagnose` judges a captured
SAML Response offline as the ACS would (Test SSO's checks, the real refusal
code): exit status 0 when it would sign in, 1 when not, 2 for bad usage. SPEC
is a `.json` or `.toml` file or `module:attribute` (importable from the current
directory).

`demo` serves the example Starlette app behind `SAMLMiddleware` and the
development IdP (under `/idp`) from one local server, so a full SAML round trip
runs with nothing else installed. `dev-idp` serves the development IdP alone,
for an app of your own to sign in against. Both bind to a loopback address
only: the development IdP lets anyone who can reach it sign in as any of its
users.

Errors are one line on stderr and a non-zero exit status, never a traceback.

This module holds the parser and `main`; each command is a module of its own (keygen,
metadata, check, diagnose, demo, dev_idp), with `settings_source` (reading `--settings`),
`serving` (loopback only) and `common` (`CLIError`) shared between them.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

from .check import _cmd_check
from .common import PROG, CLIError, _one_line
from .demo import _cmd_demo
from .dev_idp import _cmd_dev_idp
from .diagnose import _cmd_diagnose
from .keygen import CERT_NAME, KEY_NAME, _cmd_keygen, _common_name, _days
from .metadata import _cmd_metadata
from .serving import IDP_PATH, _port, loopback_host
from .settings_source import SETTINGS_HELP


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and never exits by itself."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see {self.prog} --help)", status=2)


# -- the parser -------------------------------------------------------------------------


def _add_server_options(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument(
        "--host",
        type=loopback_host,
        default="127.0.0.1",
        help="loopback address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=default_port,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "SAML 2.0 single sign-on middleware: keys, SP metadata, a configuration check "
            "and development tools."
        ),
        epilog=f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keygen = commands.add_parser(
        "keygen",
        help="make the SP's private key and self-signed certificate",
        description=(
            f"Write {KEY_NAME} (private key, mode 0600) and {CERT_NAME} (self-signed "
            "certificate) for the SP to sign AuthnRequests and decrypt assertions with, and "
            "print the settings that use them. Existing files are never overwritten without "
            "--force. IdPs trust the certificate because it is in the SP metadata, so "
            "self-signed is normal."
        ),
    )
    keygen.add_argument(
        "--out-dir", default=".", metavar="DIR", help="where to write (default: %(default)s)"
    )
    keygen.add_argument(
        "--kind",
        choices=("rsa", "ec"),
        default="rsa",
        help="rsa (default: every IdP, Entra included, accepts it) or ec (P-256)",
    )
    keygen.add_argument(
        "--bits",
        type=int,
        choices=(2048, 3072, 4096),
        default=None,
        help="RSA key size (default: 2048)",
    )
    keygen.add_argument(
        "--days",
        type=_days,
        default=365,
        help="certificate validity in days (default: %(default)s)",
    )
    keygen.add_argument(
        "--common-name",
        type=_common_name,
        metavar="CN",
        default="saml-middleware SP",
        help="the certificate's subject name (default: %(default)s)",
    )
    keygen.add_argument(
        "--force", action="store_true", help=f"replace an existing {KEY_NAME} / {CERT_NAME}"
    )
    keygen.set_defaults(handler=_cmd_keygen)

    metadata = commands.add_parser(
        "metadata",
        help="print the SP metadata XML (to upload to the IdP)",
        description=(
            "Print the SP metadata XML (entity ID, ACS URL, NameID format, certificates) "
            "that the app serves at {prefix}/metadata/, and nothing else, on stdout: "
            f"'{PROG} metadata --settings app.toml > sp-metadata.xml'. The IdP is not "
            "contacted (the SP metadata does not depend on it)."
        ),
    )
    metadata.add_argument("--settings", required=True, metavar="SPEC", help=SETTINGS_HELP)
    metadata.add_argument(
        "--tenant", metavar="SLUG", help="an organization's SP metadata (with tenants)"
    )
    metadata.set_defaults(handler=_cmd_metadata)

    check = commands.add_parser(
        "check",
        help="validate the settings and the IdP metadata; print what to paste into the IdP",
        description=(
            "Validate the settings, read the IdP metadata as the middleware would (fetching "
            "a metadata URL), and print the values to paste into the IdP, the IdP's "
            "endpoints and signing certificates, the attribute and role mapping, the store "
            "and the clock. Each problem is one line naming the setting key. Exit status: "
            "0 when there is no error (warnings allowed), 1 otherwise."
        ),
    )
    check.add_argument("--settings", required=True, metavar="SPEC", help=SETTINGS_HELP)
    check.add_argument("--tenant", metavar="SLUG", help="check one organization (with tenants)")
    check.set_defaults(handler=_cmd_check)

    diagnose = commands.add_parser(
        "diagnose",
        help="offline Test SSO: would this captured SAML Response sign someone in, and why not",
        description=(
            "Run the ACS's checks on a captured SAML Response, offline, and print Test SSO's "
            "table of checks (or --json) with the verdict and the real refusal code. The "
            "Response may be the Base64 a browser SAML tracer shows, the URL-encoded form "
            "value (or whole form body), or the XML. Nothing is stored: no replay mark, no "
            "session, no request taken. Exit status: 0 when the Response would sign the "
            "user in, 1 when it would be refused, 2 for bad usage."
        ),
    )
    diagnose.add_argument("--settings", required=True, metavar="SPEC", help=SETTINGS_HELP)
    diagnose.add_argument("--tenant", metavar="SLUG", help="judge it for this organization")
    diagnose.add_argument(
        "--response",
        required=True,
        metavar="FILE",
        help="the captured Response: a file, or - for standard input",
    )
    diagnose.add_argument(
        "--at",
        metavar="ISO-TIME",
        help=(
            "judge every time (assertion and message times, metadata validUntil, certificate "
            "expiry) at this instant, e.g. 2024-04-25T20:31:55Z (default: now)"
        ),
    )
    diagnose.add_argument(
        "--request-id",
        metavar="ID",
        help=(
            "the ID of the outstanding AuthnRequest the Response answers (without it, a "
            "Response with InResponseTo is refused as answering an unknown request)"
        ),
    )
    diagnose.add_argument("--json", action="store_true", help="print one JSON object")
    diagnose.set_defaults(handler=_cmd_diagnose)

    demo = commands.add_parser(
        "demo",
        help="serve the example app and the development IdP on one local server",
        description=(
            "Serve the example Starlette app behind SAMLMiddleware, with the development "
            f"IdP under {IDP_PATH}, on one local server. NOT FOR PRODUCTION."
        ),
    )
    _add_server_options(demo, 8000)
    demo.set_defaults(handler=_cmd_demo)

    dev_idp = commands.add_parser(
        "dev-idp",
        help="serve the development IdP alone",
        description=(
            "Serve the development SAML IdP alone (NOT FOR PRODUCTION: anyone who can "
            "reach it signs in as any of its users, with no password)."
        ),
    )
    _add_server_options(dev_idp, 9000)
    dev_idp.add_argument(
        "--users",
        metavar="FILE.json",
        help='test users: a JSON list of {"key", "name_id", "display", "claims"} objects',
    )
    dev_idp.add_argument(
        "--sp-metadata",
        metavar="FILE_OR_URL",
        nargs="+",
        action="extend",
        default=[],
        help="SP metadata to trust: a file, or an http(s) URL fetched when first needed",
    )
    dev_idp.set_defaults(handler=_cmd_dev_idp)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 for success and --help)."""
    from ..errors import ConfigError

    # pysaml2 imports a cipher mode that cryptography has moved: noise for CLI users.
    warnings.filterwarnings("ignore", message="CFB has been moved")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except SystemExit as exc:  # --help, or uvicorn giving up
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except CLIError as exc:
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        print(f"{PROG}: error: settings: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        print(f"{PROG}: error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 1
