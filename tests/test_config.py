"""Settings validation: `load_settings` turns the settings dict into frozen objects.

Every refusal is a `ConfigError` whose `key` is the dotted key path and whose
text starts with it; secret values never appear in the text.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from saml_middleware import claims
from saml_middleware.config import NAMEID_EMAIL, Settings, load_settings
from saml_middleware.errors import ConfigError

BASE_URL = "https://app.example.com"
SECRET = "test-secret-key-0123456789abcdef"
IDP_CERT = "MIIC8DCCAdigAwIBAgIQFakeBase64CertificateBody=="
IDP = {
    "entity_id": "https://sts.windows.net/tenant-id/",
    "sso_url": "https://login.microsoftonline.com/tenant-id/saml2",
    "x509cert": IDP_CERT,
}
METADATA_URL = (
    "https://login.microsoftonline.com/tenant-id/federationmetadata/2007-06/federationmetadata.xml"
)
METADATA_XML = '<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>'
EXISTING_FILE = __file__  # any file that exists, for idp.metadata_file
FAKE_SECRET = "FAKE-SECRET-MATERIAL-7f3a9c"


def base(**overrides: Any) -> dict[str, Any]:
    """A valid settings dict (manual IdP); keyword arguments replace top-level keys."""
    raw: dict[str, Any] = {"base_url": BASE_URL, "secret_key": SECRET, "idp": dict(IDP)}
    raw.update(overrides)
    return raw


def idp(**changes: Any) -> dict[str, Any]:
    """The manual IdP section with `changes`; a value of None removes the key."""
    section = {**IDP, **changes}
    return {k: v for k, v in section.items() if v is not None}


def refused(raw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(raw)
    return info.value


def assert_refused(raw: Any, key: str, fragment: str = "") -> ConfigError:
    err = refused(raw)
    assert err.key == key
    assert str(err) == (f"{key}: {err.problem}" if key else err.problem)
    assert fragment in err.problem
    return err


# -- a real key pair ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pem_pair() -> tuple[str, str, bytes]:
    """(private key PEM, self-signed certificate PEM, private key DER)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem, cert_pem, key_der


@pytest.fixture
def pem_files(tmp_path: Path, pem_pair: tuple[str, str, bytes]) -> tuple[str, str]:
    key_pem, cert_pem, _ = pem_pair
    key_file = tmp_path / "sp.key"
    cert_file = tmp_path / "sp.crt"
    key_file.write_text(key_pem)
    cert_file.write_text(cert_pem)
    return str(key_file), str(cert_file)


# -- a minimal dict and its defaults --------------------------------------------------


def test_minimal_settings_load() -> None:
    settings = load_settings(base())
    assert isinstance(settings, Settings)
    assert settings.base_url == BASE_URL
    assert settings.secret_key == SECRET
    assert settings.idp is not None
    assert settings.idp.source == "manual"
    assert settings.idp.entity_id == IDP["entity_id"]
    assert settings.idp.sso_url == IDP["sso_url"]
    assert settings.idp.x509cert == IDP_CERT
    assert settings.idp.slo_url is None
    assert settings.idp.metadata_url is None
    assert settings.idp.metadata_refresh_seconds == 86400
    assert settings.provision is None


def test_sp_defaults() -> None:
    settings = load_settings(base())
    assert settings.sp.entity_id == "https://app.example.com/saml/metadata/"
    assert settings.acs_url == "https://app.example.com/saml/acs/"
    assert settings.endpoint_url("login") == "https://app.example.com/saml/login/"
    assert settings.sp.key_pem is None
    assert settings.sp.cert_pem is None
    assert settings.sp.name_id_format == NAMEID_EMAIL
    assert settings.sp.sign_authn_requests is False


def test_session_defaults() -> None:
    session = load_settings(base()).session
    assert session.cookie_name == "saml_session"
    assert session.max_age_seconds == 28800
    assert session.idle_timeout_seconds is None
    assert session.https_only is True
    assert session.same_site == "lax"
    assert session.backend == "cookie"


def test_security_defaults() -> None:
    security = load_settings(base()).security
    assert security.want_assertions_signed is True
    assert security.want_response_signed is False
    assert security.allow_idp_initiated is True
    assert security.clock_skew_seconds == 120
    assert security.allowed_redirect_hosts == ()
    assert security.reject_sha1 is True
    assert security.max_request_bytes == 262144


def test_paths_defaults() -> None:
    paths = load_settings(base()).paths
    assert paths.prefix == "/saml"
    assert paths.protect == ("/",)
    assert paths.exempt == ()
    assert paths.after_login == "/"
    assert paths.after_logout == "/"


def test_store_attribute_and_role_defaults() -> None:
    settings = load_settings(base())
    assert settings.store.backend == "memory"
    assert settings.attributes.preset == "entra"
    assert settings.roles.attributes == (claims.ENTRA_ROLE,)
    assert settings.roles.delimiter is None
    assert dict(settings.roles.map) == {}
    assert settings.roles.default == ()
    assert settings.roles.require_mapped_role is False


@pytest.mark.parametrize(
    "part",
    ["", "sp", "idp", "paths", "attributes", "roles", "session", "security", "store"],
)
def test_settings_are_frozen(part: str) -> None:
    settings = load_settings(base())
    obj = getattr(settings, part) if part else settings
    name = dataclasses.fields(obj)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, name, "changed")


def test_lists_are_stored_as_tuples() -> None:
    settings = load_settings(
        base(
            paths={"protect": ["/app", "/admin"], "exempt": ["/app/health"]},
            roles={"map": {"admins": ["Admin", "Owner"]}, "default": ["Viewer"]},
            security={"allowed_redirect_hosts": ["Docs.Example.com"]},
        )
    )
    assert settings.paths.protect == ("/app", "/admin")
    assert settings.paths.exempt == ("/app/health",)
    assert settings.roles.map["admins"] == ("Admin", "Owner")
    assert settings.roles.default == ("Viewer",)
    assert settings.security.allowed_redirect_hosts == ("docs.example.com",)


def test_load_settings_accepts_settings_unchanged() -> None:
    settings = load_settings(base())
    assert load_settings(settings) is settings


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://app.example.com/", "https://app.example.com"),
        ("https://app.example.com", "https://app.example.com"),
        ("http://localhost:8000/", "http://localhost:8000"),
        ("https://app.example.com:8443", "https://app.example.com:8443"),
    ],
)
def test_base_url_trailing_slash_is_dropped(base_url: str, expected: str) -> None:
    settings = load_settings(base(base_url=base_url))
    assert settings.base_url == expected
    assert settings.sp.entity_id == f"{expected}/saml/metadata/"
    assert settings.acs_url == f"{expected}/saml/acs/"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("/auth/saml/", "/auth/saml"), ("/auth/saml", "/auth/saml"), ("/sso/", "/sso")],
)
def test_prefix_is_normalised(prefix: str, expected: str) -> None:
    settings = load_settings(base(paths={"prefix": prefix}))
    assert settings.paths.prefix == expected
    assert settings.sp.entity_id == f"{BASE_URL}{expected}/metadata/"
    assert settings.acs_url == f"{BASE_URL}{expected}/acs/"


def test_explicit_sp_entity_id_is_kept() -> None:
    settings = load_settings(base(sp={"entity_id": "urn:example:app"}))
    assert settings.sp.entity_id == "urn:example:app"


@pytest.mark.parametrize(
    ("section", "name", "expected"),
    [
        ("session", "max_age_seconds", 28800),
        ("session", "idle_timeout_seconds", None),
        ("security", "clock_skew_seconds", 120),
        ("security", "max_request_bytes", 262144),
        ("sp", "entity_id", "https://app.example.com/saml/metadata/"),
        ("paths", "prefix", "/saml"),
        ("roles", "delimiter", None),
    ],
)
def test_explicit_none_means_the_default(section: str, name: str, expected: Any) -> None:
    settings = load_settings(base(**{section: {name: None}}))
    assert getattr(getattr(settings, section), name) == expected


def test_name_id_format_none_asks_for_no_format_and_absent_for_email() -> None:
    """The one exception to "None means the default": None means no NameIDPolicy."""
    assert load_settings(base(sp={"name_id_format": None})).sp.name_id_format is None
    assert load_settings(base(sp={})).sp.name_id_format == NAMEID_EMAIL


def test_explicit_none_idp_refresh_means_the_default() -> None:
    settings = load_settings(base(idp={**IDP, "metadata_refresh_seconds": None}))
    assert settings.idp is not None
    assert settings.idp.metadata_refresh_seconds == 86400


@pytest.mark.parametrize(
    "section", ["sp", "paths", "attributes", "roles", "session", "security", "store"]
)
def test_none_or_empty_section_means_defaults(section: str) -> None:
    assert load_settings(base(**{section: None})) == load_settings(base())
    assert load_settings(base(**{section: {}})) == load_settings(base())


def test_documented_none_top_level_values_are_accepted() -> None:
    settings = load_settings(base(provision=None, tenants=None))
    assert settings.provision is None


@pytest.mark.parametrize(
    ("session", "attr", "expected"),
    [
        ({"same_site": "Strict"}, "same_site", "strict"),
        ({"same_site": "none", "https_only": True}, "same_site", "none"),
        ({"https_only": False}, "https_only", False),
        ({"idle_timeout_seconds": 900}, "idle_timeout_seconds", 900),
        ({"max_age_seconds": 3600}, "max_age_seconds", 3600),
        ({"cookie_name": "__Host-app.sid"}, "cookie_name", "__Host-app.sid"),
    ],
)
def test_session_values_are_kept(session: dict[str, Any], attr: str, expected: Any) -> None:
    assert getattr(load_settings(base(session=session)).session, attr) == expected


def test_response_signature_alone_is_enough() -> None:
    settings = load_settings(
        base(security={"want_assertions_signed": False, "want_response_signed": True})
    )
    assert settings.security.want_assertions_signed is False
    assert settings.security.want_response_signed is True


def test_a_single_protect_path_may_be_a_string() -> None:
    assert load_settings(base(paths={"protect": "/app"})).paths.protect == ("/app",)


def test_callable_provision_is_kept() -> None:
    def provision(user: Any) -> Any:
        return user

    assert load_settings(base(provision=provision)).provision is provision


# -- IdP sources ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "source"),
    [
        ({"metadata_url": METADATA_URL}, "metadata_url"),
        ({"metadata_xml": METADATA_XML}, "metadata_xml"),
        ({"metadata_file": EXISTING_FILE}, "metadata_file"),
        ({"metadata_url": METADATA_URL, "entity_id": "https://sts.windows.net/t/"}, "metadata_url"),
        ({**IDP, "slo_url": "https://login.microsoftonline.com/t/saml2"}, "manual"),
    ],
)
def test_idp_source(section: dict[str, Any], source: str) -> None:
    settings = load_settings(base(idp=section))
    assert settings.idp is not None
    assert settings.idp.source == source
    for name, value in section.items():
        assert getattr(settings.idp, name) == value


def test_idp_metadata_refresh_is_kept() -> None:
    settings = load_settings(
        base(idp={"metadata_url": METADATA_URL, "metadata_refresh_seconds": 3600})
    )
    assert settings.idp is not None
    assert settings.idp.metadata_refresh_seconds == 3600


# -- every refusal names its key path ------------------------------------------------------

ERRORS = [
    # unknown keys
    pytest.param(base(sesion={}), "sesion", "unknown setting", id="unknown-top-level"),
    pytest.param(base(debug=True), "debug", "unknown setting", id="unknown-top-level-2"),
    pytest.param(
        base(session={"cookie_nme": "x"}), "session.cookie_nme", "unknown", id="unknown-nested"
    ),
    pytest.param(
        base(idp=idp(metadata_urll=METADATA_URL)), "idp.metadata_urll", "unknown", id="unk-idp"
    ),
    pytest.param(
        base(security={"allow_idp_initated": False}),
        "security.allow_idp_initated",
        "unknown",
        id="unknown-security",
    ),
    pytest.param(base(sp={"keyfile": "x"}), "sp.keyfile", "unknown", id="unknown-sp"),
    pytest.param(base(paths={"protected": ["/"]}), "paths.protected", "unknown", id="unk-paths"),
    pytest.param(base(roles={"attributes": "x"}), "roles.attributes", "unknown", id="unk-roles"),
    pytest.param(base(attributes={"maps": {}}), "attributes.maps", "unknown", id="unk-attrs"),
    pytest.param(base(store={"uri": "redis://x"}), "store.uri", "unknown", id="unknown-store"),
    # wrong types
    pytest.param(
        base(session={"max_age_seconds": "8h"}),
        "session.max_age_seconds",
        "must be an integer",
        id="int-as-str",
    ),
    pytest.param(
        base(session={"max_age_seconds": 3600.0}),
        "session.max_age_seconds",
        "must be an integer",
        id="int-as-float",
    ),
    pytest.param(
        base(session={"max_age_seconds": True}),
        "session.max_age_seconds",
        "must be an integer",
        id="bool-for-int",
    ),
    pytest.param(
        base(security={"clock_skew_seconds": False}),
        "security.clock_skew_seconds",
        "must be an integer",
        id="bool-for-int-2",
    ),
    pytest.param(
        base(idp=idp(metadata_refresh_seconds=True)),
        "idp.metadata_refresh_seconds",
        "must be an integer",
        id="bool-for-int-3",
    ),
    pytest.param(
        base(security={"allow_idp_initiated": "yes"}),
        "security.allow_idp_initiated",
        "must be true or false",
        id="bool-as-str",
    ),
    pytest.param(
        base(session={"https_only": 1}), "session.https_only", "true or false", id="bool-as-int"
    ),
    pytest.param(
        base(sp={"sign_authn_requests": "false"}),
        "sp.sign_authn_requests",
        "true or false",
        id="bool-as-str-2",
    ),
    pytest.param(base(paths={"protect": 5}), "paths.protect", "list of strings", id="list-int"),
    pytest.param(
        base(paths={"protect": ["/", 5]}), "paths.protect", "list of strings", id="list-mixed"
    ),
    pytest.param(
        base(security={"allowed_redirect_hosts": {"a": 1}}),
        "security.allowed_redirect_hosts",
        "list of strings",
        id="list-dict",
    ),
    pytest.param(base(roles={"attribute": 5}), "roles.attribute", "list of strings", id="ra"),
    pytest.param(base(roles={"default": [1]}), "roles.default", "list of strings", id="rdef"),
    pytest.param(base(roles={"delimiter": 1}), "roles.delimiter", "string", id="delim-int"),
    pytest.param(base(sp={"entity_id": 5}), "sp.entity_id", "must be a string", id="str-int"),
    pytest.param(base(idp=idp(sso_url=["x"])), "idp.sso_url", "must be a string", id="str-list"),
    pytest.param(base(session={"same_site": 1}), "session.same_site", "string", id="ss-int"),
    pytest.param(base(session="lax"), "session", "must be a dict", id="section-str"),
    pytest.param(base(idp=METADATA_URL), "idp", "must be a dict", id="idp-str"),
    pytest.param(base(security=[]), "security", "must be a dict", id="section-list"),
    pytest.param(
        base(roles={"map": {"admins": [1]}}), "roles.map.admins", "list of role", id="rmap-int"
    ),
    pytest.param(
        base(roles={"map": {"admins": {"Admin": True}}}),
        "roles.map.admins",
        "list of role",
        id="rmap-dict",
    ),
    pytest.param(
        base(roles={"map": {"admins": [""]}}), "roles.map.admins", "list of role", id="rmap-empty"
    ),
    pytest.param(base(roles={"map": {"admins": 5}}), "roles.map.admins", "list", id="rmap-5"),
    pytest.param(base(roles={"map": ["admins"]}), "roles.map", "must be a dict", id="rmap-list"),
    pytest.param(base(roles={"map": []}), "roles.map", "must be a dict", id="rmap-empty-list"),
    pytest.param(base(roles={"map": ""}), "roles.map", "must be a dict", id="rmap-empty-str"),
    # ranges
    pytest.param(
        base(session={"max_age_seconds": 59}), "session.max_age_seconds", "at least 60", id="ma"
    ),
    pytest.param(
        base(session={"idle_timeout_seconds": 10}),
        "session.idle_timeout_seconds",
        "at least 60",
        id="idle",
    ),
    pytest.param(
        base(security={"clock_skew_seconds": -1}),
        "security.clock_skew_seconds",
        "at least 0",
        id="skew-neg",
    ),
    pytest.param(
        base(security={"clock_skew_seconds": 3601}),
        "security.clock_skew_seconds",
        "at most 3600",
        id="skew-big",
    ),
    pytest.param(
        base(security={"max_request_bytes": 100}),
        "security.max_request_bytes",
        "at least 1024",
        id="max-bytes",
    ),
    pytest.param(
        base(idp=idp(metadata_refresh_seconds=10)),
        "idp.metadata_refresh_seconds",
        "at least 60",
        id="refresh",
    ),
    # paths
    pytest.param(base(paths={"prefix": "saml"}), "paths.prefix", "single '/'", id="prefix-rel"),
    pytest.param(base(paths={"prefix": "/"}), "paths.prefix", "not be '/'", id="prefix-root"),
    pytest.param(base(paths={"prefix": "//evil"}), "paths.prefix", "single '/'", id="prefix-//"),
    pytest.param(base(paths={"protect": ["app"]}), "paths.protect", "'/'", id="protect-rel"),
    pytest.param(base(paths={"exempt": ["\\health"]}), "paths.exempt", "'/'", id="exempt-bs"),
    pytest.param(
        base(paths={"after_login": "https://evil.example"}),
        "paths.after_login",
        "'/'",
        id="after-login-url",
    ),
    pytest.param(
        base(paths={"after_logout": "//evil.example"}),
        "paths.after_logout",
        "'/'",
        id="after-logout-//",
    ),
    # base_url
    pytest.param(
        {"secret_key": SECRET, "idp": IDP}, "base_url", "is required", id="base-url-missing"
    ),
    pytest.param(base(base_url=None), "base_url", "is required", id="base-url-none"),
    pytest.param(base(base_url=""), "base_url", "must not be empty", id="base-url-empty"),
    pytest.param(base(base_url=5), "base_url", "must be a string", id="base-url-int"),
    *[
        pytest.param(base(base_url=url), "base_url", "absolute http(s) origin", id=f"url-{url}")
        for url in [
            "app.example.com",
            "ftp://x",
            "https://app.example.com//path",
            "https://app.example.com/a/../b",
            "https://user@host",
            "https://user:pw@host",
            "https://:pw@host",
            "https://app.example.com?next=/",
            "https://app.example.com#top",
            "https://",
            "/relative",
            "http://[::1",
            "https://app.example.com:abc",
        ]
    ],
    # secret_key
    pytest.param(
        {"base_url": BASE_URL, "idp": IDP}, "secret_key", "is required", id="secret-missing"
    ),
    pytest.param(base(secret_key=None), "secret_key", "is required", id="secret-none"),
    pytest.param(base(secret_key=""), "secret_key", "at least 16", id="secret-empty"),
    pytest.param(base(secret_key="x" * 15), "secret_key", "at least 16", id="secret-15"),
    pytest.param(base(secret_key=12345678901234567890), "secret_key", "string", id="secret-int"),
    # IdP given two ways
    pytest.param(
        base(idp={"metadata_url": METADATA_URL, "metadata_xml": METADATA_XML}),
        "idp.metadata_xml",
        "already given by idp.metadata_url",
        id="idp-url+xml",
    ),
    pytest.param(
        base(idp={"metadata_url": METADATA_URL, "metadata_file": EXISTING_FILE}),
        "idp.metadata_file",
        "already given by idp.metadata_url",
        id="idp-url+file",
    ),
    pytest.param(
        base(idp={"metadata_xml": METADATA_XML, "sso_url": IDP["sso_url"]}),
        "idp.sso_url",
        "already given by idp.metadata_xml",
        id="idp-xml+sso",
    ),
    pytest.param(
        base(idp={"metadata_file": EXISTING_FILE, "x509cert": IDP_CERT}),
        "idp.x509cert",
        "already given by idp.metadata_file",
        id="idp-file+cert",
    ),
    pytest.param(
        base(idp={"metadata_url": METADATA_URL, "slo_url": "https://idp.example.com/slo"}),
        "idp.slo_url",
        "already given by idp.metadata_url",
        id="idp-url+slo",
    ),
    # manual IdP incomplete or wrong
    pytest.param(base(idp=idp(sso_url=None)), "idp.sso_url", "is required", id="no-sso"),
    pytest.param(base(idp=idp(x509cert=None)), "idp.x509cert", "is required", id="no-cert"),
    pytest.param(base(idp=idp(entity_id=None)), "idp.entity_id", "is required", id="no-entity"),
    pytest.param(base(idp={}), "idp.entity_id", "is required", id="idp-empty"),
    pytest.param(base(idp=idp(sso_url="/saml2")), "idp.sso_url", "absolute", id="sso-rel"),
    pytest.param(
        base(idp=idp(sso_url="login.microsoftonline.com/t/saml2")),
        "idp.sso_url",
        "absolute http(s) URL",
        id="sso-no-scheme",
    ),
    pytest.param(base(idp=idp(sso_url="ftp://idp/sso")), "idp.sso_url", "http(s)", id="sso-ftp"),
    pytest.param(base(idp=idp(sso_url="http://[::1")), "idp.sso_url", "absolute", id="sso-ipv6"),
    pytest.param(base(idp=idp(slo_url="slo")), "idp.slo_url", "absolute", id="slo-rel"),
    pytest.param(
        base(idp={"metadata_url": "login.microsoftonline.com/x.xml"}),
        "idp.metadata_url",
        "absolute http(s) URL",
        id="metadata-url-rel",
    ),
    pytest.param(
        base(idp={"metadata_file": "/nonexistent/federationmetadata.xml"}),
        "idp.metadata_file",
        "no such file",
        id="metadata-file-missing",
    ),
    pytest.param(
        base(idp={"metadata_file": str(Path(__file__).parent)}),
        "idp.metadata_file",
        "no such file",
        id="metadata-file-dir",
    ),
    # attributes
    pytest.param(base(attributes={"preset": "azure"}), "attributes.preset", "one of", id="pre"),
    pytest.param(base(attributes={"preset": "Entra"}), "attributes.preset", "one of", id="pre-c"),
    pytest.param(
        base(attributes={"preset": ["entra"]}), "attributes.preset", "one of", id="preset-list"
    ),
    pytest.param(
        base(attributes={"map": {"emial": "mail"}}),
        "attributes.map.emial",
        "unknown field",
        id="map-unknown-field",
    ),
    pytest.param(
        base(attributes={"map": {"email": 5}}), "attributes.map.email", "claim name", id="map-5"
    ),
    pytest.param(
        base(attributes={"map": {"email": []}}), "attributes.map.email", "claim", id="map-[]"
    ),
    pytest.param(
        base(attributes={"map": {"email": [""]}}), "attributes.map.email", "claim", id="map-['']"
    ),
    pytest.param(
        base(attributes={"map": {"email": ["mail", 1]}}),
        "attributes.map.email",
        "claim",
        id="map-mixed",
    ),
    pytest.param(base(attributes={"map": "email"}), "attributes.map", "dict", id="map-str"),
    pytest.param(base(attributes={"map": []}), "attributes.map", "dict", id="map-list"),
    # session
    pytest.param(
        base(session={"same_site": "sometimes"}), "session.same_site", "one of", id="same-site"
    ),
    pytest.param(
        base(session={"same_site": "none", "https_only": False}),
        "session.same_site",
        "https_only",
        id="same-site-none-http",
    ),
    pytest.param(
        base(session={"cookie_name": "my session;"}),
        "session.cookie_name",
        "plain cookie name",
        id="cookie-name",
    ),
    pytest.param(base(session={"cookie_name": ""}), "session.cookie_name", "plain", id="ck-empty"),
    pytest.param(base(session={"backend": "db"}), "session.backend", "one of", id="sess-db"),
    # sp
    pytest.param(
        base(sp={"sign_authn_requests": True}),
        "sp.sign_authn_requests",
        "sp.key_file",
        id="sign-without-key",
    ),
    pytest.param(
        base(sp={"key_pem": "not a pem", "cert_pem": "-----BEGIN CERTIFICATE-----"}),
        "sp.key_pem",
        "not a PEM private key",
        id="key-pem-invalid",
    ),
    pytest.param(
        base(sp={"key_file": "/nonexistent/sp.key", "cert_file": "/nonexistent/sp.crt"}),
        "sp.key_file",
        "cannot read file",
        id="key-file-missing",
    ),
    # top level
    pytest.param(base(provision="myapp.hooks.provision"), "provision", "callable", id="prov-str"),
    pytest.param(base(provision=5), "provision", "callable", id="provision-int"),
    pytest.param(base(tenants={"Acme": {"idp": IDP}}), "tenants.Acme", "lowercase", id="slug"),
    pytest.param(base(tenants=5), "tenants", "callable", id="tenants-int"),
    pytest.param(
        base(tenants={"acme": {"idp": IDP, "strict": "yes"}}),
        "tenants.acme.strict",
        "true or false",
        id="tenant-strict",
    ),
    pytest.param(
        base(tenants={"acme": {"idp": IDP, "session": {"https_only": False}}}),
        "tenants.acme.session.https_only",
        "unknown setting",
        id="tenant-session-key",
    ),
    pytest.param(base(store={"backend": "redis"}), "store.url", "required", id="redis"),
    pytest.param(
        base(store={"backend": "redis", "url": "http://localhost"}),
        "store.url",
        "redis://",
        id="redis-url",
    ),
    pytest.param(
        base(security={"want_assertions_signed": False, "want_response_signed": False}),
        "security.want_assertions_signed",
        "at least one",
        id="nothing-signed",
    ),
    pytest.param(base(idp=None), "idp", "is required", id="idp-none"),
    pytest.param({"base_url": BASE_URL, "secret_key": SECRET}, "idp", "required", id="idp-gone"),
    pytest.param(["base_url", BASE_URL], "", "must be a dict", id="not-a-dict"),
]


@pytest.mark.parametrize(("raw", "key", "fragment"), ERRORS)
def test_refusal_names_its_key_path(raw: Any, key: str, fragment: str) -> None:
    err = assert_refused(raw, key, fragment)
    if key:
        assert str(err).startswith(f"{key}: ")


def test_config_error_is_a_value_error() -> None:
    assert isinstance(refused(base(base_url="ftp://x")), ValueError)


# -- the SP key pair -------------------------------------------------------------------------


def test_key_and_cert_files_are_read(pem_files: tuple[str, str], pem_pair: Any) -> None:
    key_file, cert_file = pem_files
    settings = load_settings(
        base(sp={"key_file": key_file, "cert_file": cert_file, "sign_authn_requests": True})
    )
    assert settings.sp.key_pem == pem_pair[0]
    assert settings.sp.cert_pem == pem_pair[1]
    assert settings.sp.sign_authn_requests is True


def test_inline_key_and_cert_pem(pem_pair: Any) -> None:
    settings = load_settings(base(sp={"key_pem": pem_pair[0], "cert_pem": pem_pair[1]}))
    assert settings.sp.key_pem == pem_pair[0]
    assert settings.sp.cert_pem == pem_pair[1]
    assert settings.sp.sign_authn_requests is False


def test_key_file_without_cert_file(pem_files: tuple[str, str]) -> None:
    assert_refused(base(sp={"key_file": pem_files[0]}), "sp.cert_file", "together")


def test_cert_file_without_key_file(pem_files: tuple[str, str]) -> None:
    assert_refused(base(sp={"cert_file": pem_files[1]}), "sp.key_file", "together")


def test_key_pem_and_key_file_at_once(pem_files: tuple[str, str], pem_pair: Any) -> None:
    key_file, cert_file = pem_files
    raw = base(sp={"key_pem": pem_pair[0], "key_file": key_file, "cert_file": cert_file})
    assert_refused(raw, "sp.key_pem", "not both")


def test_key_file_that_is_a_certificate(pem_files: tuple[str, str]) -> None:
    _, cert_file = pem_files
    raw = base(sp={"key_file": cert_file, "cert_file": cert_file})
    assert_refused(raw, "sp.key_file", "not a PEM private key")


def test_cert_file_that_is_a_key(pem_files: tuple[str, str]) -> None:
    key_file, _ = pem_files
    raw = base(sp={"key_file": key_file, "cert_file": key_file})
    assert_refused(raw, "sp.cert_file", "not a PEM certificate")


def test_key_file_that_is_not_pem_text(tmp_path: Path, pem_files: tuple[str, str]) -> None:
    not_pem = tmp_path / "sp.key"
    not_pem.write_text(f"{FAKE_SECRET}\n")
    err = assert_refused(
        base(sp={"key_file": str(not_pem), "cert_file": pem_files[1]}),
        "sp.key_file",
        "not a PEM private key",
    )
    assert FAKE_SECRET not in str(err)


def test_key_file_in_der_format(tmp_path: Path, pem_files: tuple[str, str], pem_pair: Any) -> None:
    der = tmp_path / "sp.der"
    der.write_bytes(pem_pair[2])
    err = assert_refused(
        base(sp={"key_file": str(der), "cert_file": pem_files[1]}),
        "sp.key_file",
        "not a PEM private key",
    )
    assert err.__cause__ is None


def test_key_file_that_is_a_directory(tmp_path: Path, pem_files: tuple[str, str]) -> None:
    raw = base(sp={"key_file": str(tmp_path), "cert_file": pem_files[1]})
    assert_refused(raw, "sp.key_file", "cannot read file")


# -- secrets never appear in messages ----------------------------------------------------------


@pytest.mark.parametrize("secret", ["short-secret-12", "hunter2", "s3cr3t-b"])
def test_short_secret_key_is_not_echoed(secret: str) -> None:
    err = assert_refused(base(secret_key=secret), "secret_key", "at least 16")
    assert secret not in str(err)


def test_secret_key_of_wrong_type_is_not_echoed() -> None:
    err = assert_refused(base(secret_key=FAKE_SECRET.encode() * 2), "secret_key", "string")
    assert FAKE_SECRET not in str(err)


@pytest.mark.parametrize(
    "value",
    [
        [f"-----BEGIN PRIVATE KEY-----\n{FAKE_SECRET}\n-----END PRIVATE KEY-----"],
        f"-----BEGIN PRIVATE KEY-----\n{FAKE_SECRET}\n-----END PRIVATE KEY-----".encode(),
        {"pem": FAKE_SECRET},
    ],
    ids=["list", "bytes", "dict"],
)
@pytest.mark.parametrize("name", ["key_pem", "key_file"])
def test_wrong_type_key_value_is_not_echoed(name: str, value: Any) -> None:
    err = assert_refused(base(sp={name: value}), f"sp.{name}", "must be a string")
    assert FAKE_SECRET not in str(err)


def test_invalid_key_pem_is_not_echoed(pem_pair: Any) -> None:
    err = assert_refused(
        base(sp={"key_pem": f"MII{FAKE_SECRET}==", "cert_pem": pem_pair[1]}),
        "sp.key_pem",
        "not a PEM private key",
    )
    assert FAKE_SECRET not in str(err)


def test_secret_under_an_unknown_key_is_not_echoed() -> None:
    err = assert_refused(base(sp={"private_key": FAKE_SECRET}), "sp.private_key", "unknown")
    assert FAKE_SECRET not in str(err)


def test_repr_of_settings_hides_secrets(pem_pair: Any) -> None:
    settings = load_settings(base(sp={"key_pem": pem_pair[0], "cert_pem": pem_pair[1]}))
    text = repr(settings)
    assert SECRET not in text
    key_body = pem_pair[0].splitlines()[1]
    assert key_body not in text
    assert "app.example.com" in text  # the rest is still there for debugging


# -- attributes and roles -------------------------------------------------------------------------

ENTRA_FIELDS = {
    "user_id": (claims.ENTRA_OBJECT_ID,),
    "email": (claims.ENTRA_EMAIL,),
    "first_name": (claims.ENTRA_GIVEN_NAME,),
    "last_name": (claims.ENTRA_SURNAME,),
    "display_name": (claims.ENTRA_DISPLAY_NAME, claims.ENTRA_UPN),
}


def test_entra_preset_maps_fields_to_entra_claims() -> None:
    attributes = load_settings(base(attributes={"preset": "entra"})).attributes
    assert attributes.preset == "entra"
    assert dict(attributes.fields) == ENTRA_FIELDS
    assert attributes.fields["email"] == (
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    )
    assert attributes.fields["user_id"] == (
        "http://schemas.microsoft.com/identity/claims/objectidentifier",
    )


def test_preset_defaults_to_entra() -> None:
    assert dict(load_settings(base()).attributes.fields) == ENTRA_FIELDS


@pytest.mark.parametrize("preset", sorted(claims.PRESETS))
def test_every_preset_loads(preset: str) -> None:
    settings = load_settings(base(attributes={"preset": preset}))
    assert dict(settings.attributes.fields) == claims.PRESETS[preset]
    assert settings.roles.attributes == claims.PRESET_ROLE_ATTRIBUTES[preset]


@pytest.mark.parametrize(
    ("claim", "expected"),
    [("mail", ("mail",)), (["mail", "email"], ("mail", "email"))],
)
def test_map_overrides_one_field_and_keeps_the_others(claim: Any, expected: tuple) -> None:
    fields = load_settings(base(attributes={"map": {"email": claim}})).attributes.fields
    assert fields["email"] == expected
    assert {k: v for k, v in fields.items() if k != "email"} == {
        k: v for k, v in ENTRA_FIELDS.items() if k != "email"
    }


def test_map_does_not_change_the_shared_preset() -> None:
    load_settings(base(attributes={"map": {"email": "mail"}}))
    assert claims.PRESETS["entra"]["email"] == (claims.ENTRA_EMAIL,)
    assert dict(load_settings(base()).attributes.fields) == ENTRA_FIELDS


def test_no_preset_with_a_map() -> None:
    settings = load_settings(
        base(attributes={"preset": None, "map": {"email": "mail", "user_id": "uid"}})
    )
    assert settings.attributes.preset is None
    assert dict(settings.attributes.fields) == {"email": ("mail",), "user_id": ("uid",)}
    assert settings.roles.attributes == ()


def test_no_preset_and_no_map() -> None:
    settings = load_settings(base(attributes={"preset": None}))
    assert dict(settings.attributes.fields) == {}


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ({}, (claims.ENTRA_ROLE,)),
        ({"attribute": claims.ENTRA_GROUPS}, (claims.ENTRA_GROUPS,)),
        ({"attribute": ["roles", "groups"]}, ("roles", "groups")),
        ({"attribute": []}, ()),
    ],
)
def test_role_attribute(roles: dict[str, Any], expected: tuple[str, ...]) -> None:
    settings = load_settings(base(attributes={"preset": "entra"}, roles=roles))
    assert settings.roles.attributes == expected


def test_role_attribute_with_no_preset() -> None:
    settings = load_settings(base(attributes={"preset": None}, roles={"attribute": "memberOf"}))
    assert settings.roles.attributes == ("memberOf",)


@pytest.mark.parametrize(("delimiter", "expected"), [("", None), (None, None), (",", ",")])
def test_role_delimiter(delimiter: str | None, expected: str | None) -> None:
    assert load_settings(base(roles={"delimiter": delimiter})).roles.delimiter == expected


def test_role_map_default_and_require() -> None:
    roles = load_settings(
        base(
            roles={
                "map": {"admins": ["Admin"], "developers": "Member"},
                "default": "Viewer",
                "require_mapped_role": True,
            }
        )
    ).roles
    assert dict(roles.map) == {"admins": ("Admin",), "developers": ("Member",)}
    assert roles.default == ("Viewer",)
    assert roles.require_mapped_role is True


# -- the SP key pair is checked at start-up, not at the first login ---------------------


def _pair(kind: str = "rsa") -> tuple[str, str]:
    from saml_middleware.keys import generate_key_pair

    return generate_key_pair("sp.example.test", kind=kind)


def test_sp_key_pair_loads():
    key, cert = _pair()
    settings = load_settings(
        base(sp={"key_pem": key, "cert_pem": cert, "sign_authn_requests": True})
    )
    assert settings.sp.sign_authn_requests


def test_sp_certificate_of_another_key_is_refused():
    key, _ = _pair()
    _, other_cert = _pair()
    with pytest.raises(ConfigError) as err:
        load_settings(base(sp={"key_pem": key, "cert_pem": other_cert}))
    assert err.value.key == "sp.cert_pem"
    assert "PRIVATE" not in str(err.value)


def test_ec_key_cannot_sign_requests():
    key, cert = _pair("ec")
    load_settings(base(sp={"key_pem": key, "cert_pem": cert}))  # fine for metadata
    with pytest.raises(ConfigError) as err:
        load_settings(base(sp={"key_pem": key, "cert_pem": cert, "sign_authn_requests": True}))
    assert err.value.key == "sp.sign_authn_requests"


def test_password_protected_or_broken_key_is_refused():
    from cryptography.hazmat.primitives import serialization

    key, cert = _pair()
    loaded = serialization.load_pem_private_key(key.encode(), password=None)
    encrypted = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    for bad in (encrypted, key.replace("\n", "\\n")):
        with pytest.raises(ConfigError) as err:
            load_settings(base(sp={"key_pem": bad, "cert_pem": cert}))
        assert err.value.key == "sp.key_pem"
        assert bad[40:80] not in str(err.value)
