"""Schemathesis hooks for tests/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

- Signs every generated `POST /webhook` body as Meta does: the header
  `X-Hub-Signature-256` is "sha256=" + hex(HMAC-SHA256(app secret, raw body)),
  over the very bytes that are sent. A header the generator made invalid on
  purpose (missing, or not of the `sha256=<64 hex>` shape) is left alone, and
  every fifth well-formed one keeps its wrong value, so 401 is exercised too.
- `webhook_signature` check: a delivery is answered 401 exactly when its
  signature is not the HMAC of the bytes sent.
- In the scopes pass (FUZZ_PASS=scopes) each request of an operation carries
  the next token of FUZZ_TOKENS in turn, and the `scope_enforcement` check
  holds the answer to the document's security requirements: 401 for an
  expired or wrongly signed token, 403 when no alternative of the
  operation's `security` is granted (or `X-On-Behalf-Of` is sent without
  `blocklist:delegate`), neither of them otherwise.
- Draws realistic path and query values (numbers of several countries in
  WhatsApp's forms, BSUIDs, two business numbers, the local verify token,
  cursors the stack handed out) in place of about half of the generated
  ones that are valid anyway, so that requests meet stored state; the
  document's patterns supply the rest.
  (Schemathesis' own dictionaries do this for bodies, see schemathesis.toml;
  for parameters whose schema is a `$ref` they fail in 4.32.5.)
- Gives body fields that must repeat a path parameter its value half of the
  time (see flatmap_case), and cuts batches the API would carry out to 50
  entries (see _shorten_batch).
- Counts requests, statuses and error codes per operation into FUZZ_STATS
  (JSON), for the summary of tests/fuzz.sh.
"""

from __future__ import annotations

import atexit
import collections
import copy
import hashlib
import hmac
import json
import os
import re
import threading
import urllib.parse

import schemathesis
from hypothesis import strategies as st
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation

APP_SECRET = os.environ.get("FUZZ_APP_SECRET", "local-app-secret").encode()
PASS = os.environ.get("FUZZ_PASS", "main")
TOKENS = json.loads(os.environ.get("FUZZ_TOKENS", "[]"))
STATS_PATH = os.environ.get("FUZZ_STATS")

VERIFY_TOKEN = os.environ.get("FUZZ_VERIFY_TOKEN", "local-verify-token")

SUBJECTS = [
    "+16505551234", "16505551234", "+16505550123", "+447700900123", "447700900999",
    "+5511987654321", "551187654321", "+5215512345678", "+5491112345678", "+84912345678",
    "+4915112345678", "+919876543210", "US.13491208655302741918", "US.ENT.11815799212886844830",
    "BR.9876543210",
]
BUSINESS = ["106540352242922", "106540352242923"]
# Parameter -> (what the document admits, realistic values).
NUMBER_OR_BSUID = re.compile(r"^((\+|00)?[1-9][0-9]{4,14}|[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128})$")
DIGITS = re.compile(r"^[0-9]{1,32}$")
CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,2048}$")
REALISTIC = {
    ParameterLocation.PATH: {
        "subject": (NUMBER_OR_BSUID, SUBJECTS),
        "phone_number_id": (DIGITS, BUSINESS),
    },
    ParameterLocation.QUERY: {
        "phone_number_id": (DIGITS, BUSINESS),
        "scope": (re.compile(r"^(all|[0-9]{1,32})$"), ["all", *BUSINESS]),
        "hub.verify_token": (re.compile(r"(?s).*"), [VERIFY_TOKEN]),
    },
}

SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_SHAPE = re.compile(r"^sha256=[0-9a-fA-F]{64}$")
DELEGATE = "blocklist:delegate"


def _workaround_cpython_ast_depth() -> None:
    """Python 3.11.7's `ast.parse` can raise SystemError ("AST constructor
    recursion depth mismatch", CPython gh-106905, fixed in 3.11.8) when
    Hypothesis parses a source file to describe a lambda, deep inside a draw.
    The description is cosmetic, so it falls back to Hypothesis' own
    "unknown" form instead of ending the run."""
    from hypothesis.internal import lambda_sources

    describe = lambda_sources._lambda_description

    def tolerant(f, *args, **kwargs):
        try:
            return describe(f, *args, **kwargs)
        except SystemError:
            return "lambda: <unknown>"

    lambda_sources._lambda_description = tolerant


def _workaround_dictionary_warning() -> None:
    """Schemathesis 4.32.5 checks dictionary entries against a parameter's
    schema with a validator that cannot follow the schema's `$ref`s (it
    raises "Pointer '/x-bundled/…' does not exist" and ends the run). The
    check only decides whether to print a warning, so a failure of it means
    no warning; generation from the dictionaries is not affected."""
    from schemathesis.specs.openapi import analysis

    detect = analysis.detect_dictionary_mismatches

    def tolerant(schema):
        try:
            return detect(schema)
        except Exception:
            return []

    analysis.detect_dictionary_mismatches = tolerant


_workaround_cpython_ast_depth()
_workaround_dictionary_warning()

_lock = threading.Lock()
_stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
_turns: collections.Counter = collections.Counter()
# The listings, and the next_cursor values their 200 answers carried.
LISTINGS = ("/v1/blocks", "/v1/audit", "/v1/chats", "/v1/numbers/{subject}/history")
_cursors: dict[str, list[str]] = collections.defaultdict(list)
_security: dict[tuple[str, str], tuple[list[list[str]], bool]] = {}


def _signature(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET, body, hashlib.sha256).hexdigest()


def _is_webhook_delivery(case) -> bool:
    return case.method.upper() == "POST" and case.path == "/webhook"


def _raw_body(case) -> bytes | None:
    """The bytes the JSON body is sent as (what `requests` sends for `json=`)."""
    body = case.body
    if isinstance(body, NotSet):
        return None
    if isinstance(body, bytes):
        return body
    try:
        return json.dumps(body, allow_nan=False).encode()
    except (TypeError, ValueError):
        return None


@schemathesis.hook
def after_load_schema(ctx, schema) -> None:
    """Reads each operation's security alternatives, and whether it takes
    `X-On-Behalf-Of`, from the document itself."""
    raw = schema.raw_schema
    default = raw.get("security", [])
    for path, item in raw.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            alternatives = [
                scopes for requirement in operation.get("security", default) for scopes in requirement.values()
            ]
            parameters = shared + operation.get("parameters", [])
            delegates = any(p.get("$ref", "").endswith("/OnBehalfOf") for p in parameters)
            _security[(method.upper(), path)] = (alternatives, delegates)


def _realistic(location: ParameterLocation, values: dict | None):
    """Each known parameter that holds an admitted value keeps it, or takes a
    realistic one, half of the time each; a value the generator made invalid
    on purpose stays as it is."""
    if not values:
        return st.just(values)
    choices = {}
    for name, value in values.items():
        known = REALISTIC[location].get(name)
        if known is None or not isinstance(value, str) or not known[0].match(value):
            choices[name] = st.just(value)
        else:
            choices[name] = st.one_of(st.just(value), st.sampled_from(known[1]))
    return st.fixed_dictionaries(choices)


# Body fields that must repeat a path parameter: (operation, body pointer, parameter).
ECHOES = [
    ("PUT /v1/settings/{phone_number_id}", ("phone_number_id",), "phone_number_id"),
    ("PUT /v1/contacts/{subject}", ("subject",), "subject"),
    ("PUT /v1/contacts/{subject}", ("number",), "subject"),
    ("PUT /v1/blocks/{subject}", ("contact", "subject"), "subject"),
    ("PUT /v1/blocks/{subject}", ("contact", "number"), "subject"),
]


@schemathesis.hook
def flatmap_case(ctx, case):
    """A body field that must name the path's subject or business number
    (`contact.number`, `phone_number_id`, …) is given the path's value half
    of the time: two generated values hardly ever agree. Only in bodies
    generated valid, and where the field holds a string."""
    label = f"{case.method.upper()} {case.path}"
    echoes = [e for e in ECHOES if e[0] == label]
    body = case.body
    negative = case.meta is None or case.meta.is_negative_at(ParameterLocation.BODY)
    if not echoes or negative or not isinstance(body, dict) or not case.path_parameters:
        return st.just(case)

    def echoed(take: bool):
        if take:
            new = copy.deepcopy(body)
            for _, pointer, parameter in echoes:
                holder = new
                for key in pointer[:-1]:
                    holder = holder.get(key) if isinstance(holder, dict) else None
                value = case.path_parameters.get(parameter)
                if isinstance(holder, dict) and isinstance(holder.get(pointer[-1]), str) and isinstance(value, str):
                    holder[pointer[-1]] = urllib.parse.unquote(value)
            case.body = new
        return case

    return st.booleans().map(echoed)


@schemathesis.hook
def flatmap_path_parameters(ctx, path_parameters):
    return _realistic(ParameterLocation.PATH, path_parameters)


@schemathesis.hook
def flatmap_query(ctx, query):
    strategy = _realistic(ParameterLocation.QUERY, query)
    path = ctx.operation.path if ctx.operation is not None else None
    if path not in LISTINGS or query is None:
        return strategy
    cursor = query.get("cursor")
    if cursor is not None and not (isinstance(cursor, str) and CURSOR.match(cursor)):
        return strategy  # a cursor made invalid on purpose stays
    # Once the stack has handed out cursors for this listing (a next_cursor
    # seen so far, under whatever filters), three in four generated cursors,
    # and one in two requests without one, carry one of them instead; the
    # coverage phase tries arbitrary ones.
    keep = 4 if cursor is not None else 2
    return strategy.flatmap(
        lambda drawn: st.integers(0, 10**6).map(lambda i: _with_seen_cursor(path, drawn, i, keep))
    )


def _with_seen_cursor(path: str, query: dict, draw: int, keep: int) -> dict:
    with _lock:
        seen = list(_cursors.get(path, ()))
    if not seen or draw % keep == 0:
        return query
    return {**query, "cursor": seen[(draw // keep) % len(seen)]}


# Entries of a batch block or unblock sent at most (see before_call).
BATCH_ENTRIES = 50


@schemathesis.hook
def before_call(ctx, case, kwargs) -> None:
    if _is_webhook_delivery(case):
        _sign(case, kwargs)
    if case.method.upper() == "POST" and case.path == "/v1/blocks:batch":
        _shorten_batch(case)
    if PASS == "scopes" and TOKENS:
        label = f"{case.method.upper()} {case.path}"
        with _lock:
            turn = _turns[label]
            _turns[label] += 1
        token = TOKENS[turn % len(TOKENS)]
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token['token']}"}


def _shorten_batch(case) -> None:
    """A batch the API would carry out (up to 1,000 entries) is cut to its
    first BATCH_ENTRIES: on DynamoDB Local a full one takes half a minute or
    more, which is a load test, not a schema test. Batches over the limit are
    sent whole, since they are refused before any work."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("numbers"), list):
        numbers = body["numbers"]
        if BATCH_ENTRIES < len(numbers) <= 1000:
            case.body = {**body, "numbers": numbers[:BATCH_ENTRIES]}


def _signature_under_test(case) -> bool:
    """Whether this case is about the signature header itself: a coverage
    scenario for it, or a generated header that is not of the documented
    shape. (Coverage cases about the body carry a placeholder header.)"""
    meta = case.meta
    data = meta.phase.data if meta is not None else None
    if getattr(data, "parameter_location", None) is not None and type(data).__name__ == "CoveragePhaseData":
        return data.parameter_location == ParameterLocation.HEADER and str(data.parameter).lower() == SIGNATURE_HEADER.lower()
    given = (case.headers or {}).get(SIGNATURE_HEADER)
    return given is None or not SIGNATURE_SHAPE.match(str(given))


def _sign(case, kwargs) -> None:
    if _signature_under_test(case):
        return  # a deliberately invalid header stays invalid
    raw = _raw_body(case)
    if raw is None:
        return
    headers = case.headers or {}
    with _lock:
        _turns["webhook-signature"] += 1
        keep_wrong = _turns["webhook-signature"] % 5 == 0
    if keep_wrong and SIGNATURE_SHAPE.match(str(headers.get(SIGNATURE_HEADER, ""))):
        return
    case.headers = {**headers, SIGNATURE_HEADER: _signature(raw)}
    if not isinstance(case.body, bytes):
        kwargs["data"] = raw


@schemathesis.hook
def after_call(ctx, case, response) -> None:
    label = f"{case.method.upper()} {case.path}"
    code = None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            code = (error.get("error_data") or {}).get("reason") or error.get("code")
        except Exception:
            code = None
    cursor = None
    if response.status_code == 200 and case.method.upper() == "GET" and case.path in LISTINGS:
        try:
            cursor = response.json().get("next_cursor")
        except Exception:
            cursor = None
    with _lock:
        if isinstance(cursor, str) and cursor not in _cursors[case.path] and len(_cursors[case.path]) < 50:
            _cursors[case.path].append(cursor)
        _stats[label]["requests"] += 1
        _stats[label][str(response.status_code)] += 1
        if case.path in LISTINGS and (case.query or {}).get("cursor") in _cursors[case.path]:
            _stats[label]["with a cursor handed out"] += 1
        if code is not None:
            _stats[label][f"{response.status_code} {code}"] += 1


@atexit.register
def _write_stats() -> None:
    if not STATS_PATH:
        return
    with _lock:
        data = {label: dict(counts) for label, counts in _stats.items()}
    with open(STATS_PATH, "w") as out:
        json.dump(data, out, indent=1, sort_keys=True)


def _header(request, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value
    return None


@schemathesis.check
def webhook_signature(ctx, response, case):
    """A delivery is refused (401) exactly when its signature is wrong."""
    if not _is_webhook_delivery(case) or response.status_code >= 500:
        return None
    request = response.request
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    given = _header(request, SIGNATURE_HEADER)
    valid = given is not None and hmac.compare_digest(given.lower(), _signature(body))
    if valid and response.status_code == 401:
        raise AssertionError("a correctly signed delivery was refused with 401")
    if not valid and response.status_code != 401:
        raise AssertionError(
            f"a delivery with a missing or wrong {SIGNATURE_HEADER} was answered {response.status_code}, not 401"
        )
    return None


@schemathesis.check
def scope_enforcement(ctx, response, case):
    """Scopes are enforced as the operation's `security` says."""
    if PASS != "scopes":
        return None
    known = _security.get((case.method.upper(), case.path))
    if known is None or not known[0]:
        return None  # no bearer security on this operation (the webhook)
    alternatives, delegates = known
    sent = _header(response.request, "Authorization") or ""
    token = next((t for t in TOKENS if f"Bearer {t['token']}" == sent), None)
    if token is None:
        return None
    status = response.status_code
    name = token["name"]
    if not token["valid"]:
        if status != 401:
            raise AssertionError(f"token `{name}` is not valid, yet the answer is {status}, not 401")
        return None
    granted = set(token["scopes"])
    allowed = any(set(scopes) <= granted for scopes in alternatives)
    behalf = (_header(response.request, "X-On-Behalf-Of") or "").strip()
    if isinstance(behalf, bytes) or not all(c == "\t" or " " <= c <= "~" for c in behalf):
        behalf = ""  # a value that is not visible ASCII is no header to the API (HTTP's rule)
    if allowed and delegates and behalf and DELEGATE not in granted:
        allowed = False
    if not allowed and status != 403:
        raise AssertionError(
            f"token `{name}` ({' '.join(sorted(granted))}) grants none of {alternatives}"
            f"{' with X-On-Behalf-Of' if behalf else ''}, yet the answer is {status}, not 403"
        )
    if allowed and status in (401, 403):
        refusal = False
        if status == 403:
            try:
                refusal = response.json()["error"]["type"] == "BlocklistRefusal"
            except Exception:
                refusal = False
        if not refusal:
            raise AssertionError(f"token `{name}` ({' '.join(sorted(granted))}) is sufficient, yet the answer is {status}")
    return None
