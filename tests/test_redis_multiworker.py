"""Several workers, one Redis: what a load balancer in front of the app does to sign-in.

First two engines in one process (two "workers" with their own store
objects), then two real worker processes on loopback ports, an ASGI one under
uvicorn and a WSGI one on a threaded wsgiref server, sharing one Redis:

* the AuthnRequest sent by one worker is answered at the other's ACS;
* the same answer posted again, to either worker, is refused as a replay;
* the same valid answer posted to both workers many times at once is
  accepted exactly once;
* a server-side session started on one worker is served by the other, and
  logout on one ends it on the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from tests.helpers import Browser, header, request, settings_for, stop_process
from tests.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
START_SECONDS = 30
STOP_SECONDS = 10
POSTS_PER_WORKER = 16
BASE_URL = "http://sp.multi.test"  # the load balancer's address: the same for every worker


# -- two engines in one process -------------------------------------------------------------


@pytest.fixture(params=["cookie", "store"])
def two_engines(
    request: pytest.FixtureRequest, devidp: DevIdP, redis_url: str, redis_prefix: str
) -> tuple[Engine, Engine]:
    settings = settings_for(
        devidp,
        session__backend=request.param,
        store={"backend": "redis", "url": redis_url, "prefix": redis_prefix},
    )
    first, second = Engine(settings), Engine(settings)
    devidp.add_service_provider(first.sp_metadata_xml())
    return first, second


@pytest.mark.anyio
async def test_login_sent_by_one_engine_is_answered_at_the_other(
    two_engines: tuple[Engine, Engine], devidp: DevIdP
) -> None:
    a, b = two_engines
    on_a = Browser(a, devidp)
    saml_request, relay_state = await on_a.start_login("/reports")
    info = devidp.parse_authn_request(saml_request, "redirect")
    answer = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    started = dict(on_a.cookies)  # the login binding, kept by an attacker
    on_b = Browser(b, devidp, cookies=on_a.cookies)
    accepted = await on_b.post_acs(answer, relay_state)
    assert accepted.status == 303 and header(accepted, "location") == "/reports"

    replayed = await Browser(a, devidp, cookies=started).post_acs(answer, relay_state)
    assert replayed.status == 403
    assert header(replayed, "x-saml-error") in ("replay", "wrong_in_response_to")

    # The session started on B is good on A, and logout on A ends it on B.
    passed = await on_a.get("/reports")
    assert isinstance(passed, PassThrough) and passed.user.name_id == "B.Simon@contoso.com"
    copied = dict(on_a.cookies)
    out = await a.handle(request("POST", "/saml/logout/", cookies=on_a.cookies))
    assert isinstance(out, Response) and out.status == 303
    if a.settings.session.backend == "store":
        after = await b.handle(
            request("GET", "/reports", headers={"accept": "application/json"}, cookies=copied)
        )
        assert isinstance(after, Response) and after.status == 401


@pytest.mark.anyio
async def test_an_unsolicited_answer_replayed_on_the_other_engine_is_refused(
    two_engines: tuple[Engine, Engine], devidp: DevIdP
) -> None:
    a, b = two_engines
    answer = devidp.create_response(
        "ajones", sp_entity_id=a.settings.sp.entity_id, in_response_to=None
    )
    assert (await Browser(a, devidp).post_acs(answer)).status == 303
    again = await Browser(b, devidp).post_acs(answer)
    assert again.status == 403 and header(again, "x-saml-error") == "replay"


# -- two worker processes -------------------------------------------------------------------


@contextmanager
def worker(kind: str, name: str, settings: dict[str, Any], log_path: Path) -> Iterator[str]:
    """A worker process on a free loopback port; its URL once it answers. Always stopped."""
    port = free_port()
    if kind == "asgi":
        argv = [
            sys.executable, "-m", "uvicorn", "tests.redis_worker_app:asgi_app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
    else:
        argv = [sys.executable, "-m", "tests.redis_worker_app", str(port)]
    env = {
        **os.environ,
        "SAML_WORKER_SETTINGS": json.dumps(settings),
        "SAML_WORKER_NAME": name,
    }
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + START_SECONDS
            with httpx.Client(timeout=5) as client:
                while True:
                    try:
                        if client.get(f"{url}/saml/metadata/").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"worker {name} did not start: {log_path.read_text()}")
                    time.sleep(0.1)
            yield url
        finally:
            stop_process(process, STOP_SECONDS)


@pytest.fixture
def workers(
    devidp: DevIdP, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """(ASGI worker URL, WSGI worker URL), one app, one Redis, server-side sessions."""
    settings = settings_for(
        devidp,
        base_url=BASE_URL,
        session={"backend": "store", "https_only": False},
        store={"backend": "redis", "url": redis_url, "prefix": redis_prefix},
    )
    with (
        worker("asgi", "A", settings, tmp_path / "a.log") as a,
        worker("wsgi", "B", settings, tmp_path / "b.log") as b,
    ):
        devidp.add_service_provider(httpx.get(f"{a}/saml/metadata/", timeout=5).text)
        yield a, b


def start_login(client: httpx.Client, worker_url: str, devidp: DevIdP) -> tuple[str, str, str]:
    """Begin signing in at `worker_url`: the IdP's signed answer, the RelayState and the
    login binding cookie ("name=value") of the browser that started it."""
    reply = client.get(f"{worker_url}/saml/login/?next=/me")
    assert reply.status_code == 303, reply.text
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    info = devidp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    answer = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    return answer, query["RelayState"][0], reply.headers["set-cookie"].split(";", 1)[0]


def post_answer(
    worker_url: str, answer: str, relay_state: str | None, cookie: str | None
) -> httpx.Response:
    form = {"SAMLResponse": answer}
    if relay_state is not None:
        form["RelayState"] = relay_state
    headers = {"cookie": cookie} if cookie else {}
    with httpx.Client(timeout=30) as client:
        return client.post(f"{worker_url}/saml/acs/", data=form, headers=headers)


def post_everywhere_at_once(
    urls: list[str], answer: str, relay_state: str | None, cookie: str | None, per_worker: int
) -> list[int]:
    """POST the same answer `per_worker` times to each worker, all released together."""
    posts = [url for url in urls for _ in range(per_worker)]
    barrier = threading.Barrier(len(posts), timeout=30)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def post(url: str) -> None:
        try:
            barrier.wait()
            statuses.append(post_answer(url, answer, relay_state, cookie).status_code)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(url,)) for url in posts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    return statuses


def test_two_worker_processes_share_sign_in_through_redis(
    workers: tuple[str, str], devidp: DevIdP
) -> None:
    a, b = workers
    with httpx.Client(timeout=30) as client:
        answer, relay_state, binding = start_login(client, a, devidp)
        accepted = post_answer(b, answer, relay_state, binding)
        assert accepted.status_code == 303, accepted.text
        assert accepted.headers["location"] == "/me"
        cookie = accepted.headers["set-cookie"].split(";", 1)[0]

        again = post_answer(a, answer, relay_state, binding)  # a copy of the binding
        assert again.status_code == 403 and again.headers["x-saml-error"] in (
            "replay",
            "wrong_in_response_to",
        )

        me = client.get(f"{a}/me", headers={"cookie": cookie, "accept": "application/json"})
        assert me.status_code == 200
        assert me.json() == {"worker": "A", "name_id": "B.Simon@contoso.com"}
        assert client.get(f"{b}/me", headers={"cookie": cookie}).json()["worker"] == "B"

        out = client.post(f"{b}/saml/logout/", headers={"cookie": cookie})
        assert out.status_code == 303
        gone = client.get(f"{a}/me", headers={"cookie": cookie, "accept": "application/json"})
        assert gone.status_code == 401


@pytest.mark.parametrize("solicited", [True, False], ids=["solicited", "idp-initiated"])
def test_one_answer_posted_to_both_workers_at_once_is_accepted_once(
    workers: tuple[str, str], devidp: DevIdP, solicited: bool, record_property: Callable[..., Any]
) -> None:
    a, b = workers
    if solicited:
        with httpx.Client(timeout=30) as client:
            answer, relay_state, binding = start_login(client, a, devidp)
    else:
        entity_id = f"{BASE_URL}/saml/metadata/"
        answer = devidp.create_response("bsimon", sp_entity_id=entity_id, in_response_to=None)
        relay_state, binding = None, None
    # Every post carries the binding (copies of one browser): only the marks decide.
    statuses = post_everywhere_at_once([a, b], answer, relay_state, binding, POSTS_PER_WORKER)
    record_property("instances", 2)
    record_property("posts", len(statuses))
    record_property("acceptances", statuses.count(303))
    assert len(statuses) == 2 * POSTS_PER_WORKER
    assert statuses.count(303) == 1, statuses
    assert set(statuses) == {303, 403}, statuses


@pytest.mark.anyio
async def test_a_session_revoked_by_single_logout_on_one_engine_is_gone_on_the_other(
    devidp: DevIdP, redis_url: str, redis_prefix: str
) -> None:
    settings = settings_for(
        devidp,
        session__backend="store",
        store={"backend": "redis", "url": redis_url, "prefix": redis_prefix},
    )
    a, b = Engine(settings), Engine(settings)
    devidp.add_service_provider(a.sp_metadata_xml())
    on_a = Browser(a, devidp)
    assert (await on_a.login("bsimon")).status == 303
    assert isinstance(await on_a.get("/reports"), PassThrough)

    _, outbound = devidp.create_logout_request(a.settings.sp.entity_id, "B.Simon@contoso.com")
    parts = urlsplit(outbound.url)
    answered = await b.handle(request("GET", f"{parts.path}?{parts.query}"))  # no cookie
    assert isinstance(answered, Response) and answered.status == 303

    gone = await on_a.get("/reports", accept="application/json")
    assert isinstance(gone, Response) and gone.status == 401
    # The same LogoutRequest replayed at A is refused: one Redis remembers it.
    again = await a.handle(request("GET", f"{parts.path}?{parts.query}"))
    assert isinstance(again, Response) and header(again, "x-saml-error") == "replay"
