"""ACS throughput: validating one signed, Entra-like SAML Response, against baselines.

    python benchmarks/acs.py            # 9 rounds, 40 fresh responses per variant
    python benchmarks/acs.py --quick    # 3 rounds, 8 responses (a smoke run, ~1 minute)

Rows (each gets the very same fresh responses, minted by the development IdP:
NameID emailAddress, the Entra claims with 3 roles, RSA-SHA256/SHA-256,
exclusive c14n, RSA-2048; IdP-initiated, no encryption):

  a   plain pysaml2 `parse_authn_request_response`, its default backend (xmlsec1 processes)
  b   the same client with saml_middleware's in-process backend (`saml.crypto.install`)
  e   the project's whole ACS: `Engine.handle(POST /saml/acs/)` as configured today
  e+  the same engine with the in-process backend installed (omitted once it is the default)
  p   python3-saml `is_valid`, strict=True (only if `onelogin` is importable)
  c1  the floor: lxml parse + exclusive c14n + SHA-256 digest + RSA verify (cryptography)

Every row is first checked to accept a genuine response and refuse a tampered one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from _common import (
    Row,
    acs_form,
    acs_request,
    environment,
    measure,
    new_idp,
    report,
    service_provider,
    settings,
)
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from lxml import etree
from saml2 import BINDING_HTTP_POST
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.sigver import get_xmlsec_binary

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, Response
from saml_middleware.saml.crypto import InProcessSecurityContext, install
from saml_middleware.stores import make_store

DS = "http://www.w3.org/2000/09/xmldsig#"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS = {"ds": DS, "saml": SAML}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def plain_pysaml2(engine: Engine, idp: DevIdP, *, in_process: bool) -> Saml2Client:
    """A Saml2Client configured by hand, as a pysaml2 user would (not by saml/sp.py)."""
    config = SPConfig()
    config.load(
        {
            "entityid": engine.settings.sp.entity_id,
            "xmlsec_binary": get_xmlsec_binary(),
            "metadata": {"inline": [idp.metadata_xml()]},
            "allow_unknown_attributes": True,
            "accepted_time_diff": 120,
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(engine.settings.acs_url, BINDING_HTTP_POST)]
                    },
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "allow_unsolicited": True,
                    "only_use_keys_in_metadata": True,
                }
            },
        }
    )
    client = Saml2Client(config=config)
    if in_process:
        install(client, reject_sha1=True)
    return client


class Floor:
    """The least work a correct check of these signatures needs (no SAML rules at all)."""

    def __init__(self, cert_pem: str) -> None:
        self.key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()

    def verify(self, data: bytes) -> bool:
        root = etree.fromstring(data, _PARSER)
        signed = [root, *root.findall(f"{{{SAML}}}Assertion")]
        checked = 0
        for element in reversed(signed):  # the assertion first: the response covers it
            signature = element.find(f"{{{DS}}}Signature")
            if signature is None:
                continue
            signed_info = signature.find(f"{{{DS}}}SignedInfo")
            digest = base64.b64decode(signed_info.findtext(".//ds:DigestValue", namespaces=NS))
            position = element.index(signature)
            element.remove(signature)  # the enveloped-signature transform
            canonical = etree.tostring(element, method="c14n", exclusive=True)
            element.insert(position, signature)
            if hashlib.sha256(canonical).digest() != digest:
                return False
            value = base64.b64decode(signature.findtext("ds:SignatureValue", namespaces=NS))
            info = etree.tostring(signed_info, method="c14n", exclusive=True)
            try:
                if isinstance(self.key, ec.EllipticCurvePublicKey):
                    self.key.verify(value, info, ec.ECDSA(hashes.SHA256()))
                else:
                    self.key.verify(value, info, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                return False
            checked += 1
        return checked > 0


def python3_saml(engine: Engine, idp: DevIdP) -> Any:
    """python3-saml in strict mode for the same SP, or None when it is not installed."""
    try:
        from onelogin.saml2.response import OneLogin_Saml2_Response
        from onelogin.saml2.settings import OneLogin_Saml2_Settings
    except ImportError:
        return None
    cert = "".join(idp.cert_pem.strip().splitlines()[1:-1])
    onelogin = OneLogin_Saml2_Settings(
        {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": engine.settings.sp.entity_id,
                "assertionConsumerService": {
                    "url": engine.settings.acs_url,
                    "binding": BINDING_HTTP_POST,
                },
            },
            "idp": {
                "entityId": idp.entity_id,
                "singleSignOnService": {"url": idp.sso_redirect_url},
                "x509cert": cert,
            },
            "security": {"wantAssertionsSigned": True, "rejectDeprecatedAlgorithm": True},
        },
        sp_validation_only=True,
    )
    request_data = {
        "https": "on",
        "http_host": "app.example.test",
        "server_port": "443",
        "script_name": "/saml/acs/",
        "get_data": {},
        "post_data": {},
    }

    def is_valid(encoded: str) -> bool:
        return bool(OneLogin_Saml2_Response(onelogin, encoded).is_valid(request_data))

    return is_valid


def tampered(encoded: str) -> str:
    root = etree.fromstring(base64.b64decode(encoded))
    root.find(".//saml:Subject/saml:NameID", NS).text = "admin@contoso.com"
    return base64.b64encode(etree.tostring(root)).decode()


@dataclass
class Subjects:
    """Everything that validates responses, built once."""

    loop: asyncio.AbstractEventLoop
    engine: Engine
    configured: str  # the engine's backend as the project configures it today
    forced: Engine | None  # the engine with the in-process backend, unless it is the default
    default_client: Saml2Client
    backend_client: Saml2Client
    floor: Floor
    onelogin: Any


def build(idp: DevIdP) -> Subjects:
    loop = asyncio.new_event_loop()
    engine = Engine(settings(idp))
    idp.add_service_provider(engine.sp_metadata_xml())
    sec = service_provider(engine, loop).client.sec
    configured = "in-process" if isinstance(sec, InProcessSecurityContext) else "xmlsec1"
    forced = None
    if configured != "in-process":
        forced = Engine(settings(idp))
        install(service_provider(forced, loop).client, reject_sha1=True)
    return Subjects(
        loop,
        engine,
        configured,
        forced,
        plain_pysaml2(engine, idp, in_process=False),
        plain_pysaml2(engine, idp, in_process=True),
        Floor(idp.cert_pem),
        python3_saml(engine, idp),
    )


def rows_for(s: Subjects, responses: list[str]) -> list[Row]:
    """The rows of one variant; the floor (the reference) last."""
    raw = [base64.b64decode(r) for r in responses]
    forms = [acs_form(r) for r in responses]

    def pysaml2_batch(client: Saml2Client) -> int:
        for encoded in responses:
            assert client.parse_authn_request_response(encoded, BINDING_HTTP_POST).name_id
        return len(responses)

    def engine_batch(target: Engine) -> int:
        fresh_replay_cache(target)

        async def run() -> None:
            for form in forms:
                reply = await target.handle(acs_request(form))
                if not isinstance(reply, Response) or reply.status != 303:
                    raise AssertionError(f"the engine refused a genuine response: {reply}")

        s.loop.run_until_complete(run())
        return len(forms)

    def floor_batch() -> int:
        for data in raw:
            assert s.floor.verify(data)
        return len(raw)

    def onelogin_batch() -> int:
        for encoded in responses:
            assert s.onelogin(encoded)
        return len(responses)

    rows = [
        Row(
            "a",
            "pysaml2, default backend (xmlsec1 processes)",
            lambda: pysaml2_batch(s.default_client),
        ),
        Row("b", "pysaml2 + in-process backend", lambda: pysaml2_batch(s.backend_client)),
        Row(
            "e",
            f"Engine.handle ACS (as configured: {s.configured})",
            lambda: engine_batch(s.engine),
        ),
    ]
    if s.forced is not None:
        forced = s.forced
        rows.append(
            Row("e+", "Engine.handle ACS + in-process backend", lambda: engine_batch(forced))
        )
    if s.onelogin is not None:
        rows.append(Row("p", "python3-saml is_valid, strict=True", onelogin_batch))
    rows.append(Row("c1", "floor: lxml + exc-c14n + SHA-256 + RSA verify", floor_batch))
    return rows


def fresh_replay_cache(target: Engine) -> None:
    """Empty the engine's memory store in place (its parts hold the same object), so
    the same genuine responses can be posted again in the next batch."""
    target.store.__dict__.update(make_store(target.settings.store).__dict__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 8 responses")
    parser.add_argument("--rounds", type=int, help="rounds (default 9; --quick 3)")
    parser.add_argument("--responses", type=int, help="fresh responses per variant (40; 8)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 9)
    count = args.responses or (8 if args.quick else 40)

    print(environment())
    idp = new_idp()
    s = build(idp)
    print(
        f"{rounds} rounds; {count} fresh responses per variant; engine as configured: "
        f"{s.configured}; python3-saml: {'yes' if s.onelogin else 'not installed (no row p)'}"
    )
    variants = (("assertion signed", False), ("response and assertion signed", True))
    for variant, sign_response in variants:
        responses = [
            idp.create_response(
                "bsimon",
                sp_entity_id=s.engine.settings.sp.entity_id,
                in_response_to=None,
                sign_response=sign_response,
            )
            for _ in range(count)
        ]
        check(responses[0], s)
        rows = rows_for(s, responses)
        measure(rows, rounds)
        by_key = {row.key: row for row in rows}
        ours = by_key["e+" if s.forced else "e"]
        extra = [
            ("throughput, b over a (in-process vs default pysaml2)", by_key["a"], by_key["b"]),
            (f"throughput, {ours.key} over a (the project's ACS vs pysaml2)", by_key["a"], ours),
        ]
        if "p" in by_key:
            extra.append((f"throughput, {ours.key} over p (vs python3-saml)", by_key["p"], ours))
        size = len(base64.b64decode(responses[0]))
        title = f"ACS, {variant} ({size:,} B XML)"
        report(title, rows, by_key["c1"], unit="response", extra=extra)


def check(encoded: str, s: Subjects) -> None:
    """Every row accepts the genuine response and refuses a tampered copy, before timing."""
    bad = tampered(encoded)
    for client in (s.default_client, s.backend_client):
        assert client.parse_authn_request_response(encoded, BINDING_HTTP_POST).name_id
        try:
            client.parse_authn_request_response(bad, BINDING_HTTP_POST)
        except Exception:  # noqa: BLE001 - pysaml2 raises many kinds
            pass
        else:
            raise AssertionError("pysaml2 accepted a tampered response")
    for target in [s.engine] + ([s.forced] if s.forced else []):
        fresh_replay_cache(target)
        genuine = s.loop.run_until_complete(target.handle(acs_request(acs_form(encoded))))
        forged = s.loop.run_until_complete(target.handle(acs_request(acs_form(bad))))
        assert (genuine.status, forged.status) == (303, 403), (genuine, forged)
    assert s.floor.verify(base64.b64decode(encoded))
    assert not s.floor.verify(base64.b64decode(bad))
    if s.onelogin is not None:
        assert s.onelogin(encoded) and not s.onelogin(bad)


if __name__ == "__main__":
    main()
