"""docs/security.md names real tests: every test and corpus case it cites exists.

And every corpus case is cited, so the threat model and the corpus move together.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.security.test_attack_corpus import CASES

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "security.md").read_text()
CITED = re.findall(r"`([^`\s]+)`", DOC)


def _defined_tests(file_name: str) -> set[str]:
    name = Path(file_name).name
    (path,) = [p for p in (ROOT / "tests").rglob(name) if "__pycache__" not in p.parts]
    return set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.MULTILINE))


def test_every_cited_test_function_exists():
    cited = [c for c in CITED if "::" in c]
    assert len(cited) > 40
    for citation in cited:
        file_name, function = citation.split("::")
        assert function.split("[")[0] in _defined_tests(file_name), citation


def test_every_cited_corpus_case_exists_and_every_case_is_cited():
    names = {case.name for case in CASES}
    cited = {c for c in CITED if re.fullmatch(r"[SPCW]\d+[a-z]?-[\w.-]+", c)}
    assert cited - names == set(), "cited but not in the corpus"
    assert names - cited == set(), "in the corpus but not in docs/security.md"
