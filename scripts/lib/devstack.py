"""The local stack (scripts/dev) driven from Python, with the outside world
faked around it.

Shared by tests/chaos.py and scripts/bench/load.py, which both start a stack
of their own on free ports with a temporary DEV_DATA_DIR, point it at a CRM
and a Graph API they serve on loopback, and talk to it the way Meta, an API
caller and the functions' own SDK do. What they have in common lives here,
so that a change to how the stack is started, signed for or faked is made
once: a load figure and a chaos proof then speak of the same stack.

Standard library only (Python 3.11). Import it with this folder on sys.path:

    sys.path.insert(0, str(Path(__file__).resolve().parents[N] / "scripts" / "lib"))
    import devstack
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
LOCAL_DIR = ROOT / ".local"

# The secrets the stack is started with; the fakes check them in turn.
APP_SECRET = "fake-app-secret"
CRM_SECRET = "fake-crm-secret"
ACCESS_TOKEN = "fake-access-token"
JWT_SECRET = "fake-jwt-secret"
GRAPH_VERSION = "v25.0"

# Two business numbers of one WhatsApp Business Account.
BUSINESS_A = "106540352242922"
BUSINESS_B = "106540352242923"
BUSINESSES = (BUSINESS_A, BUSINESS_B)
DISPLAY = {BUSINESS_A: "15550783881", BUSINESS_B: "15550783882"}
WABA = "102290129340398"

CLIENT_TIMEOUT = 15.0

# Variables of the caller's environment that would point the stack at
# something other than what the run measures or checks: a DynamoDB
# elsewhere, other tables, change events sent to a real receiver.
FOREIGN_ENV = (
    "AWS_ENDPOINT_URL_DYNAMODB",
    "EVENTS_WEBHOOK_URL",
    "EVENTS_WEBHOOK_SECRET",
    "BLOCKLIST_TABLE",
    "AUDIT_TABLE",
    "CHATS_TABLE",
    "FAILURES_TABLE",
    "IMPORTS_TABLE",
    "MESSAGES_TABLE",
)


class StackError(RuntimeError):
    """The stack, or a call it needs, is not there: the run cannot go on."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign(secret, body):
    """X-Hub-Signature-256 of a body, as Meta (and the ingress towards the
    CRM) signs it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def quote(subject):
    """A number or BSUID as one path segment."""
    return urllib.parse.quote(subject, safe="")


def json_or_none(data):
    try:
        return json.loads(data)
    except (ValueError, TypeError):
        return None


# ---------------------------------------------------------------- HTTP


class Conn:
    """One keep-alive HTTP connection, as the stack's own SDK and reqwest
    clients pool theirs: reconnecting for every request would make the
    client's connection setup part of every figure."""

    def __init__(self, host, port, timeout=CLIENT_TIMEOUT):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """(status, body bytes); raises OSError/HTTPException when no answer."""
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A reused connection the server had already closed while
                # idle: the request never reached it, so sending it again
                # on a new connection is safe. A fresh one failing is real.
                self.close()
                if fresh or attempt:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def request(method, url, body=None, headers=None, timeout=CLIENT_TIMEOUT):
    """One HTTP request on a fresh connection: (status or None, body bytes).
    No answer at all is a None status with the error as the body, so that a
    caller retrying as Meta does needs no exception handling."""
    parts = urllib.parse.urlsplit(url)
    conn = Conn(parts.hostname, parts.port, timeout)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    try:
        return conn.request(method, path, body, headers)
    except (OSError, http.client.HTTPException) as error:
        return None, f"{type(error).__name__}: {error}".encode()
    finally:
        conn.close()


def bearer(token):
    """Headers of a JSON request to the API under a token."""
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}


def block_request(number, scope, reason):
    """PUT /v1/blocks/{number}: (path, body)."""
    return f"/v1/blocks/{quote(number)}", json.dumps({"reason": reason, "scope": scope}).encode()


# ---------------------------------------------------------------- Meta's shapes


def webhook_headers(body):
    """Headers of a webhook delivery, signed as Meta signs it."""
    return {"content-type": "application/json", "x-hub-signature-256": sign(APP_SECRET, body)}


def contact(number, name):
    return {"profile": {"name": name}, "wa_id": number.lstrip("+")}


def text_message(number, mid, timestamp, text):
    return {"from": number.lstrip("+"), "id": mid, "timestamp": timestamp, "type": "text", "text": {"body": text}}


def change(business, contacts=(), messages=(), statuses=()):
    """One `messages` change of a webhook for a business number, with only
    the lists that hold something (Meta leaves the others out)."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY[business], "phone_number_id": business},
    }
    for name, items in (("contacts", contacts), ("messages", messages), ("statuses", statuses)):
        if items:
            value[name] = list(items)
    return {"field": "messages", "value": value}


def webhook_body(changes, per_entry=None):
    """A webhook body of the WABA: the changes grouped into entries of
    `per_entry` (all in one entry by default), compact as Meta sends it."""
    per = per_entry or max(1, len(changes))
    entries = [{"id": WABA, "changes": changes[i : i + per]} for i in range(0, len(changes), per)]
    body = {"object": "whatsapp_business_account", "entry": entries}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def webhook_values(doc):
    """The `value` of every change of a webhook body (as the CRM gets it)."""
    for entry in (doc or {}).get("entry") or []:
        for c in entry.get("changes") or []:
            yield c.get("value") or {}


def send_body(to, text):
    """A text message to send through the proxy, as the Graph API takes it."""
    return json.dumps({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": text}}).encode()


# ---------------------------------------------------------------- the fakes


class FakeHandler(BaseHTTPRequestHandler):
    """The request handler the fakes build on: HTTP/1.1 keep-alive (the
    stack pools its connections), no access log, JSON answers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length)

    def answer(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def hang_up(self, after=0.0):
        """Answers nothing: optionally waits first, then closes."""
        if after:
            time.sleep(after)
        self.close_connection = True

    def crm_signed(self, body):
        """The request carries the CRM_WEBHOOK_SECRET signature of its body."""
        return hmac.compare_digest(self.headers.get("x-hub-signature-256") or "", sign(CRM_SECRET, body))

    def graph_authorized(self):
        """The request carries the stack's Graph token; otherwise answered
        401 as Graph answers it."""
        if self.headers.get("authorization") == f"Bearer {ACCESS_TOKEN}":
            return True
        self.answer(401, {"error": {"message": "Invalid OAuth access token.", "code": 190}})
        return False

    def graph_sent(self, to, message_id):
        """Graph's 200 to a send."""
        wa_id = to.lstrip("+")
        self.answer(200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}], "messages": [{"id": message_id}]})


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    # The stack opens many connections at once under load; the default
    # backlog of 5 would make some of them wait for a SYN retry.
    request_queue_size = 256


def fake_server(post, get=None):
    """A threaded HTTP server on a free port of loopback whose POSTs go to
    `post(handler)` and GETs to `get(handler)` (404 without one)."""

    class Handler(FakeHandler):
        def do_POST(self):
            post(self)

        def do_GET(self):
            if get is None:
                self.answer(404, {})
            else:
                get(self)

    return FakeServer(("127.0.0.1", 0), Handler)


def serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------- processes


def proc_fields(pid):
    """The fields of /proc/PID/stat after the command name (state first), or
    None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def alive(pid):
    fields = proc_fields(pid)
    return fields is not None and fields[0] != "Z"


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far, or None."""
    fields = proc_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def terminate(proc, grace):
    """SIGTERM to a process started here, SIGKILL if it is still there
    after `grace` seconds; waits for it either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def children(ppid):
    """(pid, argv as bytes) of each living child of a process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = proc_fields(entry.name)
        if not fields or int(fields[1]) != ppid:
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        yield int(entry.name), args


# ---------------------------------------------------------------- DynamoDB Local


def dynamodb(port, target, payload, conn=None, timeout=CLIENT_TIMEOUT):
    """One DynamoDB API call to DynamoDB Local, SigV4-signed with the local
    credentials scripts/dev uses: on `conn` when given (which raises when
    there is no answer), else on a connection of its own. Any other answer
    than a 200 raises StackError."""
    body = json.dumps(payload).encode()
    now = datetime.datetime.now(datetime.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = f"127.0.0.1:{port}"
    headers = {
        "content-type": "application/x-amz-json-1.0",
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-target": f"DynamoDB_20120810.{target}",
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["POST", "/", "", "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, hashlib.sha256(body).hexdigest()]
    )
    scope = f"{day}/us-east-1/dynamodb/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = b"AWS4local"
    for part in (day, "us-east-1", "dynamodb", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential=local/{scope}, SignedHeaders={signed}, Signature={signature}"
    if conn is None:
        status, data = request("POST", f"http://{host}/", body, headers, timeout)
    else:
        status, data = conn.request("POST", "/", body, headers)
    if status != 200:
        raise StackError(f"DynamoDB {target}: {status} {data[:300]!r}")
    return json.loads(data)


# ---------------------------------------------------------------- the stack


class Stack:
    """scripts/dev on free ports with its data in `work`, pointed at the
    fakes; its DynamoDB Local on a port chosen here (DEV_DYNAMODB_PORT), so
    that a run can reach that very instance."""

    def __init__(self, work, crm_url, graph_url, env=None):
        self.work = work
        self.api_port = free_port()
        self.ddb_port = free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.log_path = work / "dev.log"
        self.proc = None
        self.env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        self.env.update(
            {
                "LOCAL_API_ADDR": f"127.0.0.1:{self.api_port}",
                "DEV_DATA_DIR": str(work / "data"),
                "DEV_DYNAMODB_PORT": str(self.ddb_port),
                "CRM_WEBHOOK_URL": crm_url,
                "CRM_WEBHOOK_SECRET": CRM_SECRET,
                "GRAPH_API_BASE_URL": graph_url,
                "GRAPH_API_VERSION": GRAPH_VERSION,
                "WHATSAPP_APP_SECRET": APP_SECRET,
                "WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
                "LOCAL_JWT_SECRET": JWT_SECRET,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": "us-east-1",
            }
        )
        self.env.update(env or {})

    def start(self, timeout=900):
        """Starts scripts/dev and waits until the API answers (the first
        start builds it, which takes minutes)."""
        out = open(self.log_path, "ab")
        # A process group of its own: Ctrl-C reaches the caller only, and
        # stop() takes scripts/dev's children along if need be.
        self.proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "dev")],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"scripts/dev exited with {self.proc.returncode}:\n{self.tail()}")
            status, _ = request("GET", self.base + "/", timeout=1.0)
            if status is not None:
                return
            time.sleep(0.5)
        raise StackError(f"scripts/dev did not answer on {self.base}:\n{self.tail()}")

    def child(self, matches):
        """The pid of the first child of scripts/dev whose argv `matches`."""
        for pid, args in children(self.proc.pid):
            if matches(args):
                return pid
        return None

    def dynamodb_pid(self):
        """The DynamoDB Local that scripts/dev started on our port."""
        port = str(self.ddb_port).encode()
        return self.child(lambda args: any(a.endswith(b"DynamoDBLocal.jar") for a in args) and port in args)

    def api_pid(self):
        """The wa-dev binary that serves the API."""
        return self.child(lambda args: args[0].endswith(b"/wa-dev"))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        """SIGTERM to scripts/dev, which stops the API and DynamoDB Local.
        During the first build bash acts on it only once cargo returns, so
        the whole group is signalled after a while, and killed at last."""
        if not self.running():
            return
        self.proc.terminate()
        for sig, wait in ((None, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if sig is not None:
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def client(self, timeout=600.0):
        """A keep-alive connection to the API."""
        return Conn("127.0.0.1", self.api_port, timeout)

    def token(self, subject, scope="all"):
        """A token the stack accepts, minted by `wa-cli token` (built along
        with the stack by scripts/dev)."""
        try:
            out = subprocess.run(
                [str(TARGET / "debug" / "wa-cli"), "token", "--scope", scope, "--sub", subject],
                env=self.env,
                capture_output=True,
                text=True,
            )
        except OSError as error:
            raise StackError(f"wa-cli token: {error}") from error
        if out.returncode != 0:
            raise StackError(f"wa-cli token exited with {out.returncode}: {out.stderr.strip()}")
        return out.stdout.strip()
