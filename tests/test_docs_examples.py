"""Every settings example in docs/*.md (and README.md) must load: a `ConfigError` fails this test.

The convention (for whoever writes docs):

* A fenced ```python block is read (not run) with `ast`. Each assignment to a
  name that is `SETTINGS` or ends in `_SETTINGS` (`SETTINGS = {...}`) and each
  `settings={...}` keyword argument (`SAMLMiddleware(app, settings={...})`)
  whose value is a dict display is one complete settings example. Inside it:
  literals are themselves; a bare name, dotted name or lambda stands for a
  callable defined elsewhere (a `provision` or `overage_hook` function);
  `os.environ["X"]`, `os.environ.get("X")` and `os.getenv("X")` become a
  placeholder string (their default when one is given); `**OTHER` merges an
  earlier example of the same file. Anything else (an f-string, a function
  call) fails the test with a message: write the value out. A fragment written
  with `...` for what it leaves out (`SETTINGS = {"base_url": "...", ...}`, a
  bare `...` rather than the string "...") is not a complete example and is
  not checked.
* A fenced ```json or ```toml block is a complete settings example when its top
  level has a `base_url` key, or when its info string says so
  (```json settings); a marked block that does not parse fails.
* An HTML comment on the line before the fence changes the rule for that
  block: `<!-- settings: invalid -->` means the example must raise
  `ConfigError` (to show an error on purpose); `<!-- settings: skip -->` leaves
  it out.

Validation is `load_settings` only, which does no network I/O: a placeholder
metadata URL is never fetched. Settings that name files (`sp.key_file`,
`sp.cert_file`, `idp.metadata_file`) get throwaway files of the right kind in
their place, since `load_settings` reads them.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saml_middleware.config import load_settings
from saml_middleware.errors import ConfigError
from saml_middleware.keys import generate_key_pair

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: TOML examples are read on 3.11+ only
    tomllib = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
# Files that must hold at least one settings example (a guard against a parser
# that silently finds nothing).
MUST_HAVE_EXAMPLES = ("entra.md",)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"<!--\s*settings:\s*(?P<rule>invalid|skip)\s*-->")
_FILE_KEYS = ("key_file", "cert_file", "metadata_file")
# A bare `...` (not inside a string such as "..."): the mark of a fragment.
_ELLIPSIS = re.compile(r"(?<![\"'.])\.\.\.(?![\"'.])")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    info: str
    text: str
    rule: str | None  # "invalid" / "skip" from a marker comment, else None


@dataclass(frozen=True)
class Example:
    """One settings example: where it is, what it is, and what must happen."""

    where: str
    settings: Any  # the dict, or an Exception saying why it could not be read
    expect_error: bool


def fenced_blocks(path: Path, text: str | None = None) -> Iterator[Block]:
    """The fenced blocks of a Markdown file (``` and ~~~, indented ones included)."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        info = opening.group("info").strip()
        previous = next((x for x in reversed(lines[:index]) if x.strip()), "")
        marker = _MARKER.search(previous)
        body: list[str] = []
        close = index + 1
        while close < len(lines):
            candidate = lines[close].strip()
            if candidate.startswith(fence[0] * len(fence)) and not candidate.strip(fence[0]):
                break
            line = lines[close]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            close += 1
        yield Block(
            path=path,
            line=index + 1,
            language=(info.split() or [""])[0].lower(),
            info=info,
            text="\n".join(body) + "\n",
            rule=marker.group("rule") if marker else None,
        )
        index = close + 1


# -- reading python examples without running them ----------------------------------------


class NotLiteral(ValueError):
    """A settings example holds a construct this test does not evaluate."""


class Fragment(Exception):
    """A `...` stands for what the example leaves out: not a complete example."""


def _stub(name: str) -> Any:
    def hook(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} is a stand-in: docs examples are never run")

    hook.__name__ = hook.__qualname__ = name
    return hook


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _environment_value(node: ast.AST, known: Mapping[str, Any]) -> tuple[bool, Any]:
    """(True, value) for os.environ["X"], os.environ.get("X"[, d]), os.getenv("X"[, d])."""
    if isinstance(node, ast.Subscript) and _dotted(node.value) in ("os.environ", "environ"):
        name = evaluate(node.slice, known)
        return True, f"placeholder-from-environment-{name}"
    if isinstance(node, ast.Call) and _dotted(node.func) in (
        "os.environ.get",
        "environ.get",
        "os.getenv",
        "getenv",
    ):
        args = [evaluate(arg, known) for arg in node.args]
        if len(args) > 1:
            return True, args[1]
        return True, f"placeholder-from-environment-{args[0] if args else 'X'}"
    return False, None


def evaluate(node: ast.AST, known: Mapping[str, Any]) -> Any:
    """The value of a settings expression, following the convention in the docstring."""
    found, value = _environment_value(node, known)
    if found:
        return value
    if isinstance(node, ast.Constant):
        if node.value is Ellipsis:
            raise Fragment
        return node.value
    if isinstance(node, ast.Dict):
        result: dict[Any, Any] = {}
        for key, item in zip(node.keys, node.values, strict=True):
            if key is None:  # **OTHER
                name = _dotted(item)
                if name is None or name not in known:
                    raise NotLiteral(f"**{ast.unparse(item)}: not an earlier example of this file")
                result.update(copy.deepcopy(known[name]))
            else:
                result[evaluate(key, known)] = evaluate(item, known)
        return result
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [evaluate(element, known) for element in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -evaluate(node.operand, known)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return evaluate(node.left, known) + evaluate(node.right, known)
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node) or ast.unparse(node)
        if name in known:
            return copy.deepcopy(known[name])
        return _stub(name)
    if isinstance(node, ast.Lambda):
        return _stub("<lambda>")
    raise NotLiteral(f"cannot read {ast.unparse(node)[:80]!r} without running it")


def _is_settings_name(target: ast.AST) -> str | None:
    if isinstance(target, ast.Name) and (
        target.id == "SETTINGS" or target.id.endswith("_SETTINGS")
    ):
        return target.id
    return None


def python_examples(block: Block, known: dict[str, Any]) -> Iterator[tuple[int, Any]]:
    """(line in the file, settings or the error reading them) for each example of a block."""
    try:
        tree = ast.parse(block.text)
    except SyntaxError as exc:
        if _ELLIPSIS.search(block.text):
            return  # a fragment such as {"base_url": "https://example.com/app", ...}
        if re.search(r"\bSETTINGS\s*=\s*\{|\bsettings\s*=\s*\{", block.text):
            yield block.line + (exc.lineno or 0), NotLiteral(f"not valid Python: {exc.msg}")
        return
    for node in ast.walk(tree):
        value: ast.AST | None = None
        name = None
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n for n in map(_is_settings_name, targets) if n]
            if names and isinstance(node.value, ast.Dict):
                name, value = names[0], node.value
        elif (
            isinstance(node, ast.keyword)
            and node.arg == "settings"
            and isinstance(node.value, ast.Dict)
        ):
            value = node.value
        if value is None:
            continue
        line = block.line + getattr(value, "lineno", 1)
        try:
            settings = evaluate(value, known)
        except NotLiteral as exc:
            yield line, exc
            continue
        except Fragment:
            continue
        if name:
            known[name] = settings
        yield line, settings


def data_example(block: Block) -> Any | None:
    """The settings of a ```json / ```toml block, or None when it is not a settings example."""
    marked = "settings" in block.info.split()[1:]
    if block.language == "toml" and tomllib is None:
        return None
    loads = json.loads if block.language == "json" else tomllib.loads
    try:
        value = loads(block.text)
    except ValueError as exc:
        return NotLiteral(f"not valid {block.language.upper()}: {exc}") if marked else None
    if marked or (isinstance(value, dict) and "base_url" in value):
        return value
    return None


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def examples_in(path: Path, text: str | None = None) -> list[Example]:
    found: list[Example] = []
    known: dict[str, Any] = {}
    for block in fenced_blocks(path, text):
        if block.rule == "skip":
            continue
        expect_error = block.rule == "invalid"
        if block.language in ("python", "py", "python3"):
            for line, settings in python_examples(block, known):
                found.append(Example(f"{_shown(path)}:{line}", settings, expect_error))
        elif block.language in ("json", "toml"):
            settings = data_example(block)
            if settings is not None:
                found.append(Example(f"{_shown(path)}:{block.line}", settings, expect_error))
    return found


def documents() -> list[Path]:
    """docs/*.md, and README.md (its settings are the first a new user copies)."""
    readme = REPO / "README.md"
    return sorted(DOCS.glob("*.md")) + ([readme] if readme.is_file() else [])


def all_examples() -> list[Example]:
    return [example for path in documents() for example in examples_in(path)]


# -- the tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stand_in_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files of the right kind for the settings keys that name files."""
    folder = tmp_path_factory.mktemp("docs-files")
    key_pem, cert_pem = generate_key_pair("docs example", days=1)
    files = {"key_file": key_pem, "cert_file": cert_pem, "metadata_file": "<EntityDescriptor/>"}
    paths = {}
    for key, content in files.items():
        path = folder / key
        path.write_text(content)
        paths[key] = str(path)
    return paths


def with_stand_in_files(value: Any, files: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            key: files[key]
            if key in _FILE_KEYS and isinstance(item, str)
            else with_stand_in_files(item, files)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [with_stand_in_files(item, files) for item in value]
    return value


EXAMPLES = all_examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_docs_settings_example_loads(example: Example, stand_in_files: dict[str, str]) -> None:
    if isinstance(example.settings, Exception):
        pytest.fail(f"{example.where}: {example.settings} (see {__name__}'s docstring)")
    settings = with_stand_in_files(example.settings, stand_in_files)
    if example.expect_error:
        with pytest.raises(ConfigError):
            load_settings(settings)
        return
    try:
        load_settings(settings)
    except ConfigError as exc:
        pytest.fail(f"{example.where}: the settings example does not load: {exc}")


@pytest.mark.parametrize("name", MUST_HAVE_EXAMPLES)
def test_docs_hold_settings_examples(name: str) -> None:
    assert examples_in(DOCS / name), f"docs/{name} has no settings example this test can find"


# -- the convention itself -----------------------------------------------------------------

SAMPLE = """
# Title

```python
import os
SETTINGS = {
    "base_url": "https://app.example.com",
    "secret_key": os.environ["SAML_SECRET_KEY"],
    "idp": {"metadata_url": "https://login.microsoftonline.com/<tenant>/fm.xml"},
    "provision": myapp.provision_user,
}
TENANT_SETTINGS = {**SETTINGS, "base_url": os.environ.get("BASE", "https://b.example")}
```

- in a list:

  ```python
  app.add_middleware(SAMLMiddleware, settings={"base_url": "https://c.example"})
  ```

<!-- settings: invalid -->
```json
{"base_url": "nope"}
```

```json
{"sp": {"key_file": "sp.key"}}
```

```toml settings
base_url = "https://d.example"
```

<!-- settings: skip -->
```python
SETTINGS = {"base_url": f"{BASE}"}
```

~~~python
OTHER = {"base_url": "not an example: wrong name"}
X_SETTINGS = {"base_url": f"https://{HOST}"}
~~~
"""


def test_the_convention_finds_what_it_documents() -> None:
    found = examples_in(Path("sample.md"), SAMPLE)
    summary = [
        (e.where, type(e.settings).__name__, e.expect_error, _base(e.settings)) for e in found
    ]
    assert summary == [
        ("sample.md:6", "dict", False, "https://app.example.com"),
        ("sample.md:12", "dict", False, "https://b.example"),
        ("sample.md:18", "dict", False, "https://c.example"),
        ("sample.md:22", "dict", True, "nope"),
        ("sample.md:30", "dict", False, "https://d.example"),
        ("sample.md:41", "NotLiteral", False, None),
    ]
    first, second = found[0].settings, found[1].settings
    assert first["secret_key"] == "placeholder-from-environment-SAML_SECRET_KEY"
    assert callable(first["provision"]) and first["provision"].__name__ == "myapp.provision_user"
    assert second["idp"] == first["idp"] and second["provision"] is not None


def _base(settings: Any) -> Any:
    return settings.get("base_url") if isinstance(settings, dict) else None


def test_a_broken_example_fails_with_the_key(stand_in_files: dict[str, str]) -> None:
    (example,) = examples_in(
        Path("bad.md"),
        '```python\nSETTINGS = {"base_url": "https://a.example", "secret_key": "x" * 2}\n```\n',
    )
    assert isinstance(example.settings, NotLiteral)  # "x" * 2 is not read: write it out
    (example,) = examples_in(
        Path("bad.md"),
        '```python\nSETTINGS = {"base_url": "https://a.example", "secret_key": "short",'
        ' "idp": {"metadata_url": "https://idp.example/md"}}\n```\n',
    )
    with pytest.raises(ConfigError, match="secret_key"):
        load_settings(with_stand_in_files(example.settings, stand_in_files))


def test_file_settings_get_stand_in_files(stand_in_files: dict[str, str]) -> None:
    settings = {
        "base_url": "https://a.example",
        "secret_key": "0123456789abcdef0123",
        "sp": {"key_file": "/etc/saml/sp.key", "cert_file": "/etc/saml/sp.crt"},
        "idp": {"metadata_file": "/etc/saml/entra.xml"},
    }
    loaded = load_settings(with_stand_in_files(settings, stand_in_files))
    assert loaded.sp.key_pem and "PRIVATE KEY" in loaded.sp.key_pem
