"""Reading `--settings SPEC` (a `.json` or `.toml` file, or `module:attribute`) as the
middleware would, for `metadata`, `check` and `diagnose`; a tenant's settings by its slug."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..config import Settings, TenantSettings
from .common import CLIError

# `package.module:attribute` (the attribute may be dotted: `module:Class.SETTINGS`).
_MODULE_ATTRIBUTE = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
SETTINGS_HELP = (
    "the settings: a .json or .toml file holding the settings dict, or module:attribute "
    "(e.g. myapp.saml_settings:SETTINGS, importable from the current directory)"
)


def read_settings_source(spec: str) -> Mapping[str, Any] | Settings:
    """The raw settings named by `--settings`: a JSON/TOML file or `module:attribute`.

    Only reads and parses; `load_settings` validates. Relative file names inside
    the settings (`sp.key_file`, ...) stay relative to the current directory,
    as they are for the app that uses the same settings.
    """
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in (".json", ".toml") or path.is_file():
        return _settings_file(spec, path, suffix)
    if _MODULE_ATTRIBUTE.fullmatch(spec):
        return _settings_attribute(spec)
    raise CLIError(
        f"--settings {spec}: not a .json or .toml file, nor module:attribute "
        "(e.g. myapp.saml_settings:SETTINGS)"
    )


def _settings_file(spec: str, path: Path, suffix: str) -> Mapping[str, Any]:
    if suffix not in (".json", ".toml"):
        raise CLIError(
            f"--settings {spec}: use a .json or .toml file, or module:attribute "
            "(e.g. myapp.saml_settings:SETTINGS)"
        )
    loads = _toml_loads(spec) if suffix == ".toml" else None
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CLIError(f"--settings {spec}: no such file") from None
    except OSError as exc:
        raise CLIError(f"--settings {spec}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CLIError(f"--settings {spec}: not UTF-8 text") from None
    if loads is None:
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise CLIError(
                f"--settings {spec}: not valid JSON (line {exc.lineno} column {exc.colno}: "
                f"{exc.msg})"
            ) from None
        except _DuplicateKey as exc:
            raise CLIError(f"--settings {spec}: key {exc.key!r} appears twice") from None
        if not isinstance(value, dict):
            raise CLIError(f"--settings {spec}: must hold a JSON object (the settings dict)")
        return value
    try:
        return loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise CLIError(f"--settings {spec}: not valid TOML ({exc})") from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a repeated key is an error (json would keep the last silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _toml_loads(spec: str) -> Callable[[str], dict[str, Any]]:
    """tomllib (Python 3.11+), or the tomli backport on 3.10."""
    try:
        import tomllib

        return tomllib.loads
    except ModuleNotFoundError:
        pass
    try:
        import tomli  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        raise CLIError(
            f"--settings {spec}: reading TOML needs Python 3.11 or later (or pip install "
            "tomli); use a .json file or module:attribute instead"
        ) from None
    loads: Callable[[str], dict[str, Any]] = tomli.loads
    return loads


def _settings_attribute(spec: str) -> Mapping[str, Any] | Settings:
    module_name, attribute = spec.split(":", 1)
    # The console script does not put the current directory on sys.path (python -m does).
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CLIError(
                f"--settings {spec}: no module named {exc.name!r} (run from the directory "
                "that holds it, or set PYTHONPATH)"
            ) from None
        raise CLIError(
            f"--settings {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module: report it in one line
        raise CLIError(
            f"--settings {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    value: Any = module
    for name in attribute.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise CLIError(
                f"--settings {spec}: {module_name} has no attribute {attribute}"
            ) from None
    if not isinstance(value, (Mapping, Settings)):
        raise CLIError(f"--settings {spec}: is a {type(value).__name__}, not a settings dict")
    return value


def _load(spec: str) -> tuple[Mapping[str, Any] | Settings, Settings]:
    """The raw settings and their validated form; a bad key is a `ConfigError` (one line)."""
    from ..config import load_settings

    raw = read_settings_source(spec)
    return raw, load_settings(raw)


@contextlib.contextmanager
def _quiet_library_logs() -> Iterator[None]:
    """The report says everything itself: no duplicate log lines on stderr meanwhile."""
    loggers = [logging.getLogger(name) for name in ("saml_middleware", "saml2")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _with_inline_idp(settings: Settings, xml: str) -> Settings:
    """`settings` with the IdP given as inline metadata: an Engine built on it does no I/O."""
    assert settings.idp is not None
    inline = dataclasses.replace(
        settings.idp,
        source="metadata_xml",
        metadata_url=None,
        metadata_file=None,
        metadata_xml=xml,
        entity_id=None,
        sso_url=None,
        slo_url=None,
        x509cert=None,
    )
    return dataclasses.replace(settings, idp=inline)


def _tenant_settings(settings: Settings, slug: str) -> Settings:
    """One organization's merged settings, from the dict or from the app's loader."""
    return _tenant(settings, slug).settings


def _tenant(settings: Settings, slug: str) -> TenantSettings:
    """One organization (its merged settings, name, enabled), from the dict or the loader."""
    from ..config import load_tenant

    tenants = settings.tenants
    if tenants is None:
        raise CLIError("--tenant: these settings have no tenants")
    if isinstance(tenants, Mapping):
        if slug not in tenants:
            raise CLIError(f"--tenant: no organization {slug[:64]!r} in tenants")
        return tenants[slug]
    try:
        raw = tenants(slug)
        if inspect.isawaitable(raw):
            raw = asyncio.run(_awaited(raw))
    except Exception as exc:  # the app's loader: its failure, in one line
        raise CLIError(f"--tenant: the tenants loader failed: {type(exc).__name__}") from None
    if raw is None:
        raise CLIError(f"--tenant: the tenants loader knows no organization {slug[:64]!r}")
    return load_tenant(settings, slug, raw)


async def _awaited(value: Any) -> Any:
    return await value
