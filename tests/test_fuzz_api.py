"""Schemathesis fuzzing of every documented route against the REAL server over loopback.

For each operation of `GET /api/openapi.json`, Hypothesis generates requests that fit the
document (positive) and requests that break it (negative), and each is sent by real HTTP to a
running `codexpool serve`. Every answer must hold to the gateway's contract:

- no 5xx, ever, with one exception: 503 with an OpenAI error body whose `error.code` says that
  no ChatGPT account is available (`no_linked_accounts`, `limits_unavailable`). The fuzz servers
  link no account on purpose (a real Codex turn per generated request would not fit the time
  budget), so the master key's chat routes answer exactly that clean 503; it is the documented
  answer, not a crash. Any other 5xx is a bug;
- every 4xx (and the allowed 503) is the OpenAI error body: JSON with `error.message` and
  `error.type` strings (and the rest of the documented error object);
- every other answer matches the document (status, content type and JSON schema of the body).

Credentials come in three modes, each against its OWN server, so one mode cannot push another
into a state it was not meant to test (the anonymous mode's failed admin sign-ins throttle the
admin name for five minutes; a session mode's logouts void the cookies):
- anonymous: no credentials, every operation;
- sessions: one cookie holding both an admin and a portal sign-in, every cookie route. The
  routes that end sessions (both logouts) run last, after a check that the cookie still works;
- keys: a user key (`Authorization: Bearer`) and the master key (`x-api-key`), every route that
  takes a key.
Two more runs, each on its own server too:
- linked account: valid generated chat / responses / quick-test bodies run as real Codex turns
  against the fake backend (few examples: each is a turn); here no 5xx at all is allowed;
- raw bodies: every route that reads a body gets bytes the document does not describe (not
  JSON, other media types, any JSON shape, very deep nesting).

Bounded for CI: a fixed number of examples per operation and mode (`derandomize=True`: the same
requests every run), no example database, loopback only (device login goes to the fake backend).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from codexpool.testing.fake_backend import codex_overrides, make_auth_json
from tests.conftest import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

MAX_EXAMPLES = 12
# With a valid user key the OpenAI routes get past auth into most of the input handling: they
# get more examples there (elsewhere they stop at the 401 and a few examples say enough).
DEEP_ROUTES = {
    "POST /api/openai/v1/chat/completions": 40,
    "POST /api/openai/v1/responses": 40,
    "POST /api/openai/v1/codex/execute": 20,
    "POST /api/openai/codex/execute-session": 20,
}
TIMEOUT_S = 30  # a request still unanswered by then is a hang: the test fails
ALLOWED_503_CODES = frozenset({"no_linked_accounts", "limits_unavailable"})
COOKIE = "codexpool_session"
# Run last in the sessions mode, in this order: each voids part of the cookie.
SESSION_ENDERS = ("POST /api/openai/auth/logout", "POST /api/auth/logout")


def error_problems(status: int, raw: bytes) -> list[str]:
    """Return what is wrong with an error answer (empty when it is a proper OpenAI error)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return [f"{status} without a JSON body: {raw[:200]!r}"]
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return [f"{status} body has no `error` object: {raw[:200]!r}"]
    problems = []
    for name in ("message", "type"):
        if not isinstance(err.get(name), str) or not err[name]:
            problems.append(f"{status} error.{name} is not a non-empty string: {err!r}")
    for name in ("code", "param"):
        if name not in err or not isinstance(err[name], str | None):
            problems.append(f"{status} error.{name} missing or not a string/null: {err!r}")
    if err.get("source") not in ("gateway", "upstream"):
        problems.append(f"{status} error.source is not gateway/upstream: {err!r}")
    if "Traceback" in raw.decode(errors="replace"):
        problems.append(f"{status} leaks a traceback")
    return problems


def contract_problems(status: int, raw: bytes) -> list[str]:
    """Apply the module's contract to one answer (everything but the document checks)."""
    if status >= 500:
        if status == 503:
            problems = error_problems(status, raw)
            if problems:
                return problems
            code = json.loads(raw)["error"]["code"]
            if code in ALLOWED_503_CODES:
                return []
            return [f"503 with code {code!r}: only account unavailability may be a 503"]
        return [f"server error {status}: {raw[:300]!r}"]
    if status >= 400:
        return error_problems(status, raw)
    return []


def test_contract_check_can_fail() -> None:
    """The checks reject what they must (so a green fuzz run means something)."""
    good = json.dumps(
        {"error": {"message": "m", "type": "t", "param": None, "code": "c", "source": "gateway"}}
    ).encode()
    no_accounts = good.replace(b'"c"', b'"no_linked_accounts"')
    assert contract_problems(400, good) == []
    assert contract_problems(503, no_accounts) == []
    assert contract_problems(500, good)
    assert contract_problems(502, good)
    assert contract_problems(503, good)  # a 503 for another reason
    assert contract_problems(404, b"<html>Not Found</html>")
    assert contract_problems(401, b'{"detail": "no"}')
    assert contract_problems(400, good.replace(b'"type": "t"', b'"type": 3'))


class Fuzzer:
    """Sends generated cases to one live server and collects every contract violation."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        raw = requests.get(f"{server.url}/api/openapi.json", timeout=TIMEOUT_S)
        raw.raise_for_status()
        self.schema = schemathesis.openapi.from_dict(raw.json())
        self.operations = {
            op.label: op for op in (result.ok() for result in self.schema.get_all_operations())
        }
        self.failures: list[str] = []
        self.sent = 0
        self.statuses: dict[str, dict[int, int]] = {}

    def check(self, case: Any, response: Any) -> None:
        """Record the contract and document violations of one answer."""
        label = f"{case.operation.label} {case.as_curl_command()[:600]}"
        per_op = self.statuses.setdefault(case.operation.label, {})
        per_op[response.status_code] = per_op.get(response.status_code, 0) + 1
        problems = contract_problems(response.status_code, response.content)
        if not problems and response.status_code < 400:
            try:
                case.validate_response(
                    response,
                    checks=[
                        status_code_conformance,
                        content_type_conformance,
                        response_schema_conformance,
                    ],
                )
            except (AssertionError, ExceptionGroup) as exc:  # a check failed (FailureGroup)
                problems.append(f"does not match the document: {str(exc)[:1500]}")
        for problem in problems:
            self.failures.append(f"{label}\n    -> {problem}")

    def run(
        self,
        label: str,
        *,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        max_examples: int | None = None,
        positive_only: bool = False,
        keep: Callable[[Any], bool] | None = None,
        body: Any = NOT_SET,
    ) -> None:
        """Fuzz one operation in both generation modes with these fixed credentials."""
        op = self.operations[label]
        if max_examples is None:
            max_examples = MAX_EXAMPLES
        has_input = bool(op.body) or any(True for _ in op.iter_parameters())
        negative = has_input and not positive_only
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negative else [])
        for mode in modes:
            fixed = {} if body is NOT_SET else {"body": body}
            strategy = op.as_strategy(
                generation_mode=mode, headers=headers, cookies=cookies, **fixed
            )
            if mode == GenerationMode.POSITIVE:
                strategy = strategy.map(known_model)
            if keep is not None:
                strategy = strategy.filter(keep)

            @hypothesis.settings(
                max_examples=max_examples,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: report what was sent
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=strategy)
            def fuzz(case: Any) -> None:
                self.sent += 1
                response = case.call(base_url=self.server.url, timeout=TIMEOUT_S)
                self.check(case, response)

            try:
                fuzz()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing negative to say about this operation's inputs

    def assert_clean(self) -> None:
        """Fail with every violation found, not just the first."""
        print(f"{self.sent} requests; statuses per operation:")
        for label, counts in sorted(self.statuses.items()):
            print(f"  {label}: {dict(sorted(counts.items()))}")
        shown = "\n".join(self.failures[:30])
        assert not self.failures, f"{len(self.failures)} contract violations:\n{shown}"


def known_model(case: Any) -> Any:
    """Ask for a model the server offers, so valid bodies get past the model lookup (404)
    into the pool and the account checks instead of all stopping at the same 404."""
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = "codex"
    return case


def security_of(fuzzer: Fuzzer, label: str) -> set[str]:
    method, path = label.split(" ", 1)
    op = fuzzer.schema.raw_schema["paths"][path][method.lower()]
    return {name for requirement in op["security"] for name in requirement}


@pytest.fixture
def fuzz_server(
    live_server_factory: Callable[..., LiveServer],
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
) -> Iterator[Callable[..., LiveServer]]:
    """Return a factory of fresh servers: execute on (in a sandbox folder), device login and
    codex pointed at the fake backend, so no request leaves loopback."""
    root = tmp_path / "exec-root"
    root.mkdir()

    def start(start: bool = True) -> LiveServer:
        return live_server_factory(
            start=start,
            codexBin=codex_bin,
            codexConfigOverrides=list(codex_overrides(fake_backend.url)),
            testingLoginIssuer=fake_backend.url,
            executeEnabled=True,
            executeAllowedRoots=[str(root)],
            metricsToken="m" * 32,
        )

    yield start


def register(server: LiveServer, session: requests.Session, name: str) -> None:
    resp = session.post(
        f"{server.url}/api/openai/auth/register",
        json={"username": name, "password": "fuzz-password-1"},
        timeout=TIMEOUT_S,
    )
    assert resp.status_code == 201, resp.text


def test_fuzz_anonymous(fuzz_server: Callable[[], LiveServer]) -> None:
    fuzzer = Fuzzer(fuzz_server())
    for label in fuzzer.operations:
        fuzzer.run(label)
    assert fuzzer.sent > len(fuzzer.operations) * 5
    fuzzer.assert_clean()


def test_fuzz_admin_and_portal_sessions(fuzz_server: Callable[[], LiveServer]) -> None:
    server = fuzz_server()
    session = requests.Session()
    resp = session.post(
        f"{server.url}/api/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        timeout=TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    register(server, session, "fuzzer")
    cookies = {COOKIE: session.cookies[COOKIE]}  # both identities in one cookie
    fuzzer = Fuzzer(server)
    cookie_routes = [
        label
        for label in fuzzer.operations
        if security_of(fuzzer, label) & {"adminSession", "portalSession"}
    ]
    assert len(cookie_routes) > 15
    for label in cookie_routes:
        if label not in SESSION_ENDERS:
            fuzzer.run(label, cookies=cookies)
    # Both identities survived the fuzzing so far (else the routes above ran as anonymous).
    for path in ("/api/auth/me", "/api/openai/auth/me"):
        assert requests.get(server.url + path, cookies=cookies, timeout=TIMEOUT_S).ok, path
    # Random names never match a user: reveal and delete one that exists, so their 200 answers
    # are checked against the document too.
    victim = requests.Session()
    register(server, victim, "victim")
    victim.post(f"{server.url}/api/openai/keys/rotate", timeout=TIMEOUT_S).raise_for_status()
    for label in ("POST /api/admin/openai-users/reveal-key", "POST /api/admin/openai-users/delete"):
        fuzzer.run(
            label, cookies=cookies, body={"username": "victim"}, positive_only=True, max_examples=1
        )
        assert fuzzer.statuses[label].get(200) == 1, fuzzer.statuses[label]
    for label in SESSION_ENDERS:
        fuzzer.run(label, cookies=cookies)
    fuzzer.assert_clean()


def test_fuzz_api_keys(fuzz_server: Callable[[], LiveServer]) -> None:
    server = fuzz_server()
    session = requests.Session()
    register(server, session, "keyholder")
    user_key = session.post(f"{server.url}/api/openai/keys/rotate", timeout=TIMEOUT_S).json()["key"]
    session.post(
        f"{server.url}/api/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        timeout=TIMEOUT_S,
    ).raise_for_status()
    master_key = session.post(
        f"{server.url}/api/admin/openai-users/rotate-master-key", timeout=TIMEOUT_S
    ).json()["key"]
    fuzzer = Fuzzer(server)
    key_routes = [label for label in fuzzer.operations if "apiKey" in security_of(fuzzer, label)]
    assert len(key_routes) >= 6
    for label in key_routes:
        deep = DEEP_ROUTES.get(label, MAX_EXAMPLES)
        fuzzer.run(label, headers={"Authorization": f"Bearer {user_key}"}, max_examples=deep)
        # The master key shares the validation; what differs is the pool (a few suffice).
        fuzzer.run(label, headers={"x-api-key": master_key}, max_examples=MAX_EXAMPLES)
    fuzzer.assert_clean()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["model", "messages", "role", "content", "input", "username", "x"])
            | st.text(max_size=8),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    # Nesting depths around and far past Python's recursion limit.
    st.sampled_from([10, 990, 5_000, 200_000]).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([10, 5_000, 200_000]).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ]
)


def test_fuzz_raw_bodies(fuzz_server: Callable[[], LiveServer]) -> None:
    """Every route that reads a body, fed bytes that are not what the document describes
    (not JSON, other media types, JSON of any shape, very deep nesting), signed in with both
    sessions and a user key so the body is really read. The logouts and device routes read no
    body and are not part of this."""
    server = fuzz_server()
    session = requests.Session()
    register(server, session, "rawbody")
    user_key = session.post(f"{server.url}/api/openai/keys/rotate", timeout=TIMEOUT_S).json()["key"]
    resp = session.post(
        f"{server.url}/api/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        timeout=TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    cookie = session.cookies[COOKIE]
    doc = requests.get(f"{server.url}/api/openapi.json", timeout=TIMEOUT_S).json()
    targets = sorted(
        path for path, item in doc["paths"].items() if "requestBody" in item.get("post", {})
    )
    assert len(targets) >= 14
    failures: list[str] = []

    @hypothesis.settings(
        max_examples=150,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(path=st.sampled_from(targets), ctype=CONTENT_TYPES, body=RAW_BODIES)
    def fuzz(path: str, ctype: str, body: bytes) -> None:
        headers = {"Authorization": f"Bearer {user_key}", "Cookie": f"{COOKIE}={cookie}"}
        if ctype:
            headers["Content-Type"] = ctype
        resp = requests.post(server.url + path, data=body, headers=headers, timeout=TIMEOUT_S)
        for problem in contract_problems(resp.status_code, resp.content):
            failures.append(f"POST {path} ({ctype!r}, {body[:80]!r}...) -> {problem}")

    fuzz()
    # The sessions were still valid at the end (else the bodies were never read).
    assert session.get(f"{server.url}/api/auth/me", timeout=TIMEOUT_S).ok
    assert not failures, f"{len(failures)} contract violations:\n" + "\n".join(failures[:20])


def plain_turn(case: Any) -> bool:
    """Keep the bodies a linked account can run within the budget and on loopback only.

    Left out: images (the gateway downloads https image URLs; a fuzzer's URL must never make
    it reach out: tests/test_image_fetch.py covers them against a loopback server) and a
    `timeoutMs` of the client's own (a 1 ms deadline is rightly a 504 `timeout`, the client's
    choice, not a gateway fault).
    """
    body = case.body if isinstance(case.body, dict) else {}
    return "timeoutMs" not in body and "image" not in json.dumps(body)


def test_fuzz_linked_account(
    fuzz_server: Callable[..., LiveServer], fake_backend: Any, tmp_path: Path
) -> None:
    """Valid generated bodies on a LINKED account: real Codex turns against the fake backend
    (streamed or not, tools, response formats, reasoning options). Positive cases only, few of
    them: each is a real turn. No 5xx at all here: an account is linked, so not even the 503."""
    server = fuzz_server(start=False)
    server.cli("user", "add", "linked")
    auth = tmp_path / "linked-auth.json"
    auth.write_text(json.dumps(make_auth_json("acct_fuzz", "fuzz@example.com")))
    server.cli("link", "import", "linked", "--auth-json", str(auth))
    user_key = server.cli("key", "rotate", "linked").stdout.strip()
    master_key = server.cli("key", "rotate", "--master").stdout.strip()
    fake_backend.set_usage("acct_fuzz", primary_used=10, secondary_used=5)
    server.start()
    fuzzer = Fuzzer(server)
    for label in (
        "POST /api/openai/v1/chat/completions",
        "POST /api/openai/v1/responses",
        "POST /api/openai/codex/execute-session",
    ):
        for headers in ({"Authorization": f"Bearer {user_key}"}, {"x-api-key": master_key}):
            fuzzer.run(label, headers=headers, max_examples=8, positive_only=True, keep=plain_turn)
    served = sum(fuzzer.statuses.get(label, {}).get(200, 0) for label in fuzzer.statuses)
    assert served >= 10, fuzzer.statuses  # real turns ran (else this mode tested nothing)
    fuzzer.assert_clean()
    fives = {label: c for label, c in fuzzer.statuses.items() if any(s >= 500 for s in c)}
    assert not fives, f"an account is linked, yet: {fives}"
