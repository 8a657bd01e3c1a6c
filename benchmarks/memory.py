"""Memory: RSS after N/2 and after N accepted logins through the engine (in-process backend).

    python benchmarks/memory.py                    # 20,000 logins (a few minutes)
    python benchmarks/memory.py --quick            # 4,000 logins
    python benchmarks/memory.py --logins 100000    # the issue's check: 50k vs 100k

Every login is a distinct, genuinely signed Response (fresh IDs and times,
re-signed in-process with the IdP's key: minting 100,000 through the xmlsec1
program would take over an hour) posted to `Engine.handle` like a browser
would. What must stay bounded is what the engine keeps per login: the replay
cache entry of each assertion (its TTL is the assertion's lifetime plus the
clock skew) and anything pysaml2 keeps. Short assertion lifetimes (`--lifetime`,
`--skew`) let entries expire during the run, so a flat RSS between N/2 and N
shows that expired entries are really released.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import secrets
import time
from datetime import datetime, timezone

import xmlsec
from _common import acs_form, acs_request, environment, rss_bytes, service_provider, settings
from lxml import etree

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, Response
from saml_middleware.keys import generate_key_pair
from saml_middleware.saml.crypto import InProcessSecurityContext, install

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Minter:
    """Fresh copies of one genuine Response: new IDs and times, the assertion re-signed."""

    def __init__(self, template: bytes, key_pem: str, lifetime: int) -> None:
        self.template = etree.fromstring(template)
        self.key = xmlsec.Key.from_memory(key_pem.encode(), xmlsec.constants.KeyDataFormatPem)
        self.lifetime = lifetime

    def mint(self) -> str:
        root = etree.fromstring(etree.tostring(self.template))
        now = time.time()
        assertion = root.find("saml:Assertion", NS)
        root.set("ID", "_" + secrets.token_hex(16))
        assertion.set("ID", "_" + secrets.token_hex(16))
        for node in (root, assertion):
            node.set("IssueInstant", stamp(now))
        conditions = assertion.find("saml:Conditions", NS)
        conditions.set("NotBefore", stamp(now - 1))
        conditions.set("NotOnOrAfter", stamp(now + self.lifetime))
        for data in assertion.iterfind(".//saml:SubjectConfirmationData", NS):
            data.set("NotOnOrAfter", stamp(now + self.lifetime))
        signature = assertion.find("ds:Signature", NS)
        reference = signature.find("ds:SignedInfo/ds:Reference", NS)
        reference.set("URI", "#" + assertion.get("ID"))
        ctx = xmlsec.SignatureContext()
        ctx.register_id(assertion, "ID")
        ctx.key = self.key
        ctx.sign(signature)  # recomputes the digest and the signature value in place
        return base64.b64encode(etree.tostring(root)).decode("ascii")


def store_entries(engine: Engine) -> str:
    sizes = getattr(engine.store, "sizes", None)  # the memory store: entries per kind
    return str(sum(sizes().values())) if sizes is not None else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4,000 logins")
    parser.add_argument("--logins", type=int, help="logins in all (default 20,000)")
    parser.add_argument("--lifetime", type=int, default=5, help="assertion lifetime, seconds")
    parser.add_argument("--skew", type=int, default=5, help="security.clock_skew_seconds")
    args = parser.parse_args()
    total = args.logins or (4000 if args.quick else 20000)

    print(environment())
    loop = asyncio.new_event_loop()
    key_pem, cert_pem = generate_key_pair("memory benchmark IdP")
    idp = DevIdP("https://idp.example.test/idp", key_pem=key_pem, cert_pem=cert_pem)
    engine = Engine(settings(idp, clock_skew_seconds=args.skew))
    idp.add_service_provider(engine.sp_metadata_xml())
    client = service_provider(engine, loop).client
    if not isinstance(client.sec, InProcessSecurityContext):
        install(client, reject_sha1=True)
    template = idp.create_response(
        "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )
    minter = Minter(base64.b64decode(template), key_pem, args.lifetime)

    async def logins(count: int) -> None:
        for _ in range(count):
            reply = await engine.handle(acs_request(acs_form(minter.mint())))
            if not isinstance(reply, Response) or reply.status != 303:
                raise AssertionError(f"a genuine login was refused: {reply}")

    warmup = min(1000, total // 10)
    loop.run_until_complete(logins(warmup))
    gc.collect()
    points = [(warmup, rss_bytes(), store_entries(engine), time.perf_counter())]
    half = total // 2
    for target in (half, total):
        loop.run_until_complete(logins(target - points[-1][0]))
        gc.collect()
        points.append((target, rss_bytes(), store_entries(engine), time.perf_counter()))

    print(
        f"{total:,} logins; assertion lifetime {args.lifetime} s, clock skew {args.skew} s "
        "(replay entries live about lifetime + 2 x skew)\n"
    )
    print("| after logins | RSS MB | replay-store entries | logins/s since previous |")
    print("|---:|---:|---:|---:|")
    for index, (count, rss, entries, at) in enumerate(points):
        rate = ""
        if index:
            previous = points[index - 1]
            rate = f"{(count - previous[0]) / (at - previous[3]):,.0f}"
        print(f"| {count:,} | {rss / 2**20:,.1f} | {entries} | {rate} |")
    growth = (points[-1][1] - points[-2][1]) / 2**20
    print(f"\nRSS growth from {half:,} to {total:,} logins: {growth:+.1f} MB")


if __name__ == "__main__":
    main()
