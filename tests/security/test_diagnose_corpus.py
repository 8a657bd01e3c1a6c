"""`saml-middleware diagnose` agrees with the ACS on the whole attack corpus.

Each case of test_attack_corpus.py (every row, on every baseline it applies to)
is built once and given both to `Engine.diagnose` (what the command runs) and to
the ACS: both must reach the same verdict with the same refusal code (the real
one, as the engine logs it). The genuine baselines are the controls.
"""

from __future__ import annotations

import base64
import copy

import pytest

from tests.security import test_attack_corpus as corpus
from tests.security.test_attack_corpus import (
    BASELINES,
    PARAMS,
    Case,
    Forgery,
    settings_for_baseline,
)

baselines = corpus.baselines  # the corpus's fixture: its genuine responses, minted once

pytestmark = pytest.mark.anyio


async def verdicts(acs, encoded: str) -> tuple[tuple[bool, str | None], tuple[bool, str | None]]:
    """(diagnose's verdict, the ACS's verdict), each as (signs in, refusal code)."""
    diagnosis = await acs.engine.diagnose(encoded)  # first: it stores nothing either way
    offline = (diagnosis.would_sign_in, diagnosis.error.code if diagnosis.error else None)
    reply = await acs.post_encoded(encoded)
    return offline, (reply.status == 303, acs.last_code)


@pytest.mark.parametrize("baseline", BASELINES)
async def test_genuine_baseline_signs_in_both_ways(baseline, baselines, make_acs, sp_keys):
    acs = make_acs(**settings_for_baseline(baseline, sp_keys))
    offline, online = await verdicts(acs, baselines[baseline][0])
    assert offline == online == (True, None)


@pytest.mark.parametrize(("case", "baseline"), PARAMS)
async def test_diagnose_agrees_with_the_acs(
    case: Case, baseline, baselines, make_acs, sp_keys, idp_keys, attacker_keys, canary
):
    acs = make_acs(**settings_for_baseline(baseline, sp_keys))
    f = Forgery(
        baseline, copy.deepcopy(baselines[baseline][1]), idp_keys, attacker_keys, sp_keys, canary
    )
    raw = case.mutate(f)
    encoded = base64.b64encode(raw).decode() if raw is not None else f.finish()
    offline, online = await verdicts(acs, encoded)
    assert offline == online
