"""`metadata`: the SP metadata an IdP admin uploads, alone on stdout."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .common import CLIError
from .settings_source import _load, _quiet_library_logs, _tenant_settings, _with_inline_idp


def _placeholder_idp_xml() -> str:
    """Metadata of an IdP that does not exist: the SP metadata does not depend on the IdP."""
    from ..keys import generate_key_pair
    from ..metadata import manual_metadata_xml

    _, cert_pem = generate_key_pair("saml-middleware placeholder IdP", kind="ec", days=1)
    return manual_metadata_xml("urn:saml-middleware:placeholder-idp", PLACEHOLDER_SSO, cert_pem)


PLACEHOLDER_SSO = "https://idp.invalid/sso"


def _cmd_metadata(args: argparse.Namespace) -> int:
    from ..engine import Engine

    _, settings = _load(args.settings)
    if args.tenant is not None:
        settings = _tenant_settings(settings, args.tenant)
    elif settings.idp is None:
        raise CLIError("--tenant: the IdPs are per organization here: give --tenant SLUG")
    # The organizations' IdPs are not this command's business.
    settings = dataclasses.replace(settings, tenants=None, tenant_options=None)
    with _quiet_library_logs():
        # The IdP is not contacted: an admin needs this XML before the IdP app exists.
        engine = Engine(_with_inline_idp(settings, _placeholder_idp_xml()))
        xml = engine.sp_metadata_xml()
    sys.stdout.write(xml if xml.endswith("\n") else xml + "\n")
    return 0
