#!/usr/bin/env python3
"""Chaos run against the local stack (scripts/dev).

Many workers deliver Meta-shaped webhooks (batches across two business
numbers, redelivered until a 2xx, duplicated, statuses out of order) and
send through the send proxy, to allowed and to blocked people, while:

- a CRM fake answers 5xx, times out or drops the connection for a share of
  requests, and otherwise acknowledges (and records) what it got;
- a Graph fake fails a share of sends with 500 or by timing out;
- DynamoDB Local is paused (SIGSTOP/SIGCONT) a few times, and killed and
  started again once on the same port and data directory, at the moment
  the CRM acknowledges a delivery and wa-blocked handles a burst of
  delivery failures.

At the end it proves that no message was lost, duplicated or leaked, that
every delivery was answered 2xx, that every refusal is audited, and that
nothing was half-written (blocks, history, stats, idempotency claims).

    python3 tests/chaos.py [--seed N] [--workers N] [--messages N] [--seconds S] [--keep]

Standard library only. It starts its own stack on free ports with a
temporary DEV_DATA_DIR and stops everything it started, also on failure.
Exit status 0 when every property holds. Run by scripts/test.
"""

import argparse
import collections
import datetime
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "lib"))
import devstack  # noqa: E402  (the local stack and its fakes, shared with scripts/bench/load.py)
from devstack import (  # noqa: E402
    BUSINESS_A,
    BUSINESS_B,
    BUSINESSES,
    GRAPH_VERSION,
    LOCAL_DIR,
    alive,
    json_or_none,
    quote,
    request,
)

CRM_TIMEOUT_MS = 500
GRAPH_TIMEOUT_MS = 800
# Shares of requests each fake fails, by kind.
CRM_FAULTS = (("crm_5xx", 0.15), ("crm_timeout", 0.15), ("crm_close", 0.15))
GRAPH_FAULTS = (("graph_500", 0.15), ("graph_timeout", 0.10))
# Longer than the ingress's claim lease (60 s), so that a delivery whose
# claim was left pending by a failed invocation can still end in a 2xx.
DELIVERY_DEADLINE = 150.0

TEXTS = (
    "hello",
    "olá, tudo bem? 👋",
    "où est ma commande ?",
    "¿puedo cambiar la dirección?",
    "thanks 🙏🏽 see you",
    "Grüße aus Köln",
    "order #{n} please",
)


def log(message):
    print(f"==> chaos: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the plan


class Plan:
    """Everything the run does, drawn from one seed."""

    def __init__(self, seed, messages, traffic_seconds):
        rng = random.Random(seed)
        self.seed = seed
        self.traffic = traffic_seconds
        now = int(time.time())

        # Customers who write in; every third one shows a BSUID too.
        self.senders = []
        for i in range(40):
            number = f"+1650555{3000 + i:04d}" if i % 2 == 0 else f"+447700900{200 + i:03d}"
            country = "US" if number.startswith("+1") else "GB"
            bsuid = f"{country}.88{seed:04d}{i:06d}" if i % 3 == 0 else None
            self.senders.append({"number": number, "bsuid": bsuid, "name": f"Customer {i}"})
        order = list(range(len(self.senders)))
        rng.shuffle(order)
        # Blocked before the traffic starts: 8 everywhere, 4 on business A only.
        self.pre_blocks = {}
        for i in order[:8]:
            self.pre_blocks[self.senders[i]["number"]] = "all"
        for i in order[8:12]:
            self.pre_blocks[self.senders[i]["number"]] = BUSINESS_A
        # Blocked while the faults run; they never write or get written to.
        self.chaos_blocks = {
            f"+1650555{5000 + i:04d}": rng.choice(["all", BUSINESS_A, BUSINESS_B]) for i in range(10)
        }
        # WhatsApp cannot deliver to these (131026): wa-blocked auto-blocks
        # them. The first six fail together in one burst, just before the
        # restart (see Run.targeted_restart); the others before and after it.
        self.undeliverable = [f"+1650555{4000 + i:04d}" for i in range(10)]
        burst_size = 6

        # Inbound messages.
        self.messages = {}
        for n in range(messages):
            sender = rng.randrange(len(self.senders))
            business = rng.choice(BUSINESSES)
            mid = f"wamid.CHAOS.{seed}.M{n:04d}"
            kind = "image" if rng.random() < 0.1 else "text"
            self.messages[mid] = {
                "sender": sender,
                "business": business,
                "type": kind,
                "text": rng.choice(TEXTS).format(n=n),
                "timestamp": str(now + n),
            }
        ids = list(self.messages)
        chunks = []
        i = 0
        while i < len(ids):
            size = rng.randint(1, 6)
            chunks.append(ids[i : i + size])
            i += size
        # Some messages come again inside a later, different batch.
        self.rebatched = 0
        for d, chunk in enumerate(list(chunks)):
            for mid in list(chunk):
                if rng.random() < 0.08 and d + 1 < len(chunks):
                    j = rng.randrange(d + 1, min(len(chunks), d + 12))
                    if mid not in chunks[j]:
                        chunks[j].append(mid)
                        self.rebatched += 1

        # Statuses: outbound messages to allowed people, each through sent,
        # delivered and read, shuffled; and a sent + failed pair for each
        # undeliverable number.
        statuses = []
        allowed_pairs = [
            (s, b) for s in range(len(self.senders)) for b in BUSINESSES if not self.blocked(s, b)
        ]
        for k in range(20):
            sender, business = rng.choice(allowed_pairs)
            oid = f"wamid.CHAOS.{seed}.O{k:03d}"
            for state in ("sent", "delivered", "read"):
                statuses.append(
                    {
                        "id": oid,
                        "status": state,
                        "business": business,
                        "recipient": self.senders[sender]["number"],
                        "timestamp": str(now + k),
                    }
                )
        failed, burst = [], []
        for k, number in enumerate(self.undeliverable):
            oid = f"wamid.CHAOS.{seed}.F{k:03d}"
            business = rng.choice(BUSINESSES)
            for state in ("sent", "failed"):
                status = {
                    "id": oid,
                    "status": state,
                    "business": business,
                    "recipient": number,
                    "timestamp": str(now + k),
                }
                if k >= burst_size:
                    failed.append(status)
                elif state == "failed":
                    burst.append(status)
                else:
                    statuses.append(status)
        rng.shuffle(statuses)
        rng.shuffle(failed)
        self.statuses = statuses + failed + burst

        # Companion deliveries of allowed messages: the CRM acknowledges one
        # of them at the very moment DynamoDB Local is killed.
        companions = []
        for k in range(24):
            sender, business = rng.choice(allowed_pairs)
            mid = f"wamid.CHAOS.{seed}.C{k:03d}"
            self.messages[mid] = {
                "sender": sender,
                "business": business,
                "type": "text",
                "text": rng.choice(TEXTS).format(n=k),
                "timestamp": str(now + messages + k),
            }
            companions.append([mid])

        # The faults, relative to the start of the traffic.
        self.restart_at = traffic_seconds * 0.3
        self.chaos = []
        for at in (traffic_seconds * 0.07, traffic_seconds * 0.2, traffic_seconds * 0.55, traffic_seconds * 0.8):
            self.chaos.append((at, "pause", round(rng.uniform(1.0, 3.0), 1)))
        self.chaos.append((self.restart_at, "restart", 0))
        self.chaos.sort()

        # Jobs, each with the time it starts at.
        jobs = []
        for chunk in chunks:
            jobs.append({"kind": "delivery", "messages": chunk, "statuses": []})
        s = 0
        while s < len(statuses):
            size = rng.randint(1, 4)
            jobs.append({"kind": "delivery", "messages": [], "statuses": statuses[s : s + size]})
            s += size
        for job in jobs:
            job["at"] = rng.uniform(0, traffic_seconds)
        # Failed statuses both before and after the restart: the stream
        # poller must feed wa-blocked across it.
        for k, status in enumerate(failed):
            at = rng.uniform(1, self.restart_at - 2) if k % 2 == 0 else rng.uniform(self.restart_at + 8, traffic_seconds)
            jobs.append({"kind": "delivery", "messages": [], "statuses": [status], "at": at})
        for job in jobs:
            job["shape_split"] = rng.random() < 0.3
        # Meta sends some deliveries twice: a copy of the same bytes, soon after.
        for job in list(jobs):
            if rng.random() < 0.10:
                copy = dict(job, at=min(traffic_seconds, job["at"] + rng.uniform(0, 6)), duplicate=True)
                jobs.append(copy)
        # Driven by the restart itself, not by a worker.
        jobs.append({"kind": "delivery", "messages": [], "statuses": burst, "targeted": "burst"})
        for ids in companions:
            jobs.append({"kind": "delivery", "messages": ids, "statuses": [], "targeted": "companion"})
        for job in jobs[-1 - len(companions) :]:
            job["at"] = self.restart_at
            job["shape_split"] = False
        # Sends through the proxy: about a third to blocked people.
        blocked_senders = [i for i, c in enumerate(self.senders) if c["number"] in self.pre_blocks]
        allowed_senders = [i for i, c in enumerate(self.senders) if c["number"] not in self.pre_blocks]
        for n in range(80):
            pool = blocked_senders if rng.random() < 0.35 else allowed_senders
            sender = rng.choice(pool)
            business = rng.choice(BUSINESSES)
            jobs.append(
                {
                    "kind": "send",
                    "n": n,
                    "to": self.senders[sender]["number"],
                    "business": business,
                    "refused": self.blocked(sender, business),
                    "at": rng.uniform(0, traffic_seconds),
                }
            )
        for number, scope in self.chaos_blocks.items():
            jobs.append({"kind": "block", "number": number, "scope": scope, "at": rng.uniform(0, traffic_seconds)})
        jobs.sort(key=lambda j: j["at"])
        for k, job in enumerate(jobs):
            job["id"] = k
        self.jobs = jobs

    def blocked(self, sender, business):
        scope = self.pre_blocks.get(self.senders[sender]["number"])
        return scope == "all" or scope == business

    def message_blocked(self, mid):
        m = self.messages[mid]
        return self.blocked(m["sender"], m["business"])

    def blocked_number(self, number, business):
        scope = self.pre_blocks.get(number) or self.chaos_blocks.get(number)
        return scope == "all" or scope == business

    def payload(self, job):
        """The webhook body of a delivery job, as Meta shapes it."""
        changes = collections.OrderedDict()

        def group(business):
            return changes.setdefault(
                business, {"contacts": collections.OrderedDict(), "messages": [], "statuses": []}
            )

        for mid in job["messages"]:
            m = self.messages[mid]
            customer = self.senders[m["sender"]]
            number = customer["number"]
            c = group(m["business"])
            contact = devstack.contact(number, customer["name"])
            if m["type"] == "text":
                message = devstack.text_message(number, mid, m["timestamp"], m["text"])
            else:
                message = {"from": number[1:], "id": mid, "timestamp": m["timestamp"], "type": m["type"]}
                message["image"] = {
                    "mime_type": "image/jpeg",
                    "sha256": hashlib.sha256(mid.encode()).hexdigest(),
                    "id": str(1003383421387256 + len(mid)),
                    "caption": m["text"],
                }
            if customer["bsuid"]:
                contact["user_id"] = customer["bsuid"]
                message["from_user_id"] = customer["bsuid"]
            c["contacts"][number] = contact
            c["messages"].append(message)
        for st in job["statuses"]:
            status = {
                "id": st["id"],
                "status": st["status"],
                "timestamp": st["timestamp"],
                "recipient_id": st["recipient"][1:],
            }
            if st["status"] == "failed":
                status["errors"] = [
                    {
                        "code": 131026,
                        "title": "Message undeliverable",
                        "message": "Message undeliverable",
                        "error_data": {"details": "Message Undeliverable."},
                    }
                ]
            else:
                status["pricing"] = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}
            group(st["business"])["statuses"].append(status)
        values = [devstack.change(b, c["contacts"].values(), c["messages"], c["statuses"]) for b, c in changes.items()]
        # Meta puts the changes of several business numbers in one entry or
        # in one entry each: both shapes are taken.
        return devstack.webhook_body(values, per_entry=1 if job.get("shape_split") else None)


# ---------------------------------------------------------------- the fakes


class Faults:
    """A seeded draw of one fault kind (or None) per request."""

    def __init__(self, seed, kinds):
        self.rng = random.Random(seed)
        self.kinds = kinds
        self.lock = threading.Lock()
        self.counts = collections.Counter()

    def draw(self):
        with self.lock:
            r = self.rng.random()
            edge = 0.0
            for kind, share in self.kinds:
                edge += share
                if r < edge:
                    self.counts[kind] += 1
                    return kind
            return None


class Crm:
    """The CRM's webhook endpoint: verifies the signature, fails a share of
    requests, and records every id it got and every id it acknowledged."""

    def __init__(self, seed):
        self.faults = Faults(seed, CRM_FAULTS)
        self.lock = threading.Lock()
        self.acked = collections.Counter()  # message id -> acknowledgements
        self.acked_statuses = collections.Counter()  # "id#status" -> acknowledgements
        self.requests = []  # every request: time, outcome, ids
        self.bad_signatures = 0
        # Set by the targeted restart: updates acknowledged without a fault,
        # and messages whose acknowledgement waits for the kill.
        self.force = set()
        self.hold = set()
        self.holding = 0  # acknowledgements waiting for the kill
        self.release = threading.Event()
        self.server = devstack.fake_server(self.receive)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crm/webhook"

    def receive(self, handler):
        started = time.monotonic()
        body = handler.body()
        good = handler.crm_signed(body)
        messages, statuses, contacts = [], [], []
        for value in devstack.webhook_values(json_or_none(body)):
            business = (value.get("metadata") or {}).get("phone_number_id")
            for m in value.get("messages") or []:
                messages.append((m.get("id"), business, m.get("from"), m.get("from_user_id")))
            for s in value.get("statuses") or []:
                statuses.append(f"{s.get('id')}#{s.get('status')}")
            for c in value.get("contacts") or []:
                contacts.append((business, c.get("wa_id"), c.get("user_id")))
        keys = {m[0] for m in messages} | set(statuses)
        forced = bool(keys & self.force)
        fault = "bad_signature" if not good else None if forced else self.faults.draw()
        record = {
            "t": time.time(),
            "fault": fault,
            "messages": messages,
            "statuses": statuses,
            "contacts": contacts,
        }
        with self.lock:
            self.requests.append(record)
            if not good:
                self.bad_signatures += 1
            if fault is None:
                for mid, *_ in messages:
                    self.acked[mid] += 1
                for key in statuses:
                    self.acked_statuses[key] += 1
        if fault == "bad_signature":
            handler.answer(401, {"error": "bad signature"})
        elif fault == "crm_5xx":
            handler.answer(503, {"error": "unavailable"})
        elif fault == "crm_timeout":
            handler.hang_up(after=CRM_TIMEOUT_MS / 1000 + 0.4)
        elif fault == "crm_close":
            handler.hang_up()
        else:
            if forced and keys & self.hold:
                # Well inside CRM_TIMEOUT_MS: the ingress gets this 200.
                with self.lock:
                    self.holding += 1
                self.release.wait(0.25)
                with self.lock:
                    self.holding -= 1
                record["held"] = True
            handler.answer(200, {"received": len(messages) + len(statuses)})
        record["seconds"] = time.monotonic() - started


class Graph:
    """Graph's send endpoint: fails a share of sends with 500 or by not
    answering in time, and records every send it got."""

    def __init__(self, seed):
        self.faults = Faults(seed, GRAPH_FAULTS)
        self.lock = threading.Lock()
        self.sends = {}  # (send n, attempt) -> what Graph saw and did
        self.unexpected = []
        self.counter = 0
        self.server = devstack.fake_server(self.receive)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, handler):
        body = handler.body()
        parts = [p for p in handler.path.split("?")[0].split("/") if p]
        if not handler.graph_authorized():
            return
        doc = json_or_none(body) or {}
        text = ((doc.get("text") or {}).get("body")) or ""
        tag = re.search(r"chaos-send (\d+)\.(\d+)", text)
        if len(parts) != 3 or parts[0] != GRAPH_VERSION or parts[2] != "messages" or not tag:
            with self.lock:
                self.unexpected.append((handler.path, body[:200]))
            handler.answer(400, {"error": {"message": "Invalid parameter", "code": 100}})
            return
        key = (int(tag.group(1)), int(tag.group(2)))
        fault = self.faults.draw()
        with self.lock:
            self.counter += 1
            message_id = f"wamid.GRAPH.{self.counter:05d}"
        self.sends[key] = {"to": doc.get("to"), "business": parts[1], "fault": fault, "message_id": message_id}
        if fault == "graph_500":
            handler.answer(500, {"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 1, "fbtrace_id": "chaos"}})
        elif fault == "graph_timeout":
            handler.hang_up(after=GRAPH_TIMEOUT_MS / 1000 + 0.5)
        else:
            handler.graph_sent(doc.get("to") or "", message_id)


# ---------------------------------------------------------------- the stack


class Dynamo:
    """The DynamoDB Local that scripts/dev started: paused, and killed and
    started again once with the very command line, working directory and
    port (the one started here is stopped at the end)."""

    def __init__(self, pid, port, log_path):
        self.pid = pid
        self.port = port
        self.log_path = log_path
        self.cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        self.cwd = os.readlink(f"/proc/{pid}/cwd")
        self.restarted = None  # the Popen of the DynamoDB Local started here
        self.killed_at = None
        self.paused = False
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.downtime = 0.0

    def answers(self):
        status, _ = request("GET", f"http://127.0.0.1:{self.port}/", timeout=1.0)
        return status is not None

    def pause(self, seconds):
        with self.lock:
            os.kill(self.pid, signal.SIGSTOP)
            self.paused = True
        self.counts["ddb_pause"] += 1
        time.sleep(seconds)
        self.resume()

    def resume(self):
        with self.lock:
            if self.paused:
                try:
                    os.kill(self.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                self.paused = False

    def kill(self):
        with self.lock:
            self.killed_at = time.time()
            os.kill(self.pid, signal.SIGKILL)

    def start(self):
        """Starts it again once the killed one is gone."""
        while alive(self.pid):
            time.sleep(0.05)
        self.counts["ddb_restart"] += 1
        for _ in range(3):
            out = open(self.log_path, "ab")
            self.restarted = subprocess.Popen(
                self.cmdline, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, process_group=0
            )
            out.close()
            self.pid = self.restarted.pid
            for _ in range(300):
                if self.answers():
                    self.downtime = time.time() - self.killed_at
                    return
                if self.restarted.poll() is not None:
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # the port may still be held a moment
        raise RuntimeError("DynamoDB Local did not come back on its port")

    def stop_restarted(self):
        self.resume()
        if self.restarted:
            devstack.terminate(self.restarted, 15)


class Stack(devstack.Stack):
    """scripts/dev on free ports, pointed at the fakes, with short timeouts
    towards them; its DynamoDB Local under the run's control."""

    def __init__(self, work, crm, graph):
        timeouts = {"CRM_TIMEOUT_MS": str(CRM_TIMEOUT_MS), "GRAPH_TIMEOUT_MS": str(GRAPH_TIMEOUT_MS)}
        super().__init__(work, crm.url, graph.url, timeouts)
        self.dynamo = None

    def start(self):
        super().start(timeout=900)
        pid = self.dynamodb_pid()
        if pid is None:
            raise RuntimeError("DynamoDB Local started by scripts/dev not found")
        self.dynamo = Dynamo(pid, self.ddb_port, LOCAL_DIR / f"dynamodb-local-{self.ddb_port}.log")

    def stop(self):
        """Also the DynamoDB Local started again after the kill, which is
        no child of scripts/dev's."""
        original = self.dynamo.pid if self.dynamo and not self.dynamo.restarted else None
        if self.dynamo:
            self.dynamo.resume()
        super().stop()
        if self.dynamo:
            self.dynamo.stop_restarted()
        if original and alive(original):
            os.kill(original, signal.SIGKILL)


# ---------------------------------------------------------------- the API


class Api:
    def __init__(self, base, token):
        self.base = base
        self.auth = devstack.bearer(token)

    def get(self, path):
        for _ in range(20):
            status, body = request("GET", self.base + path, headers=self.auth)
            if status == 200:
                return json.loads(body)
            time.sleep(0.5)
        raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")

    def pages(self, path):
        items, cursor = [], None
        sep = "&" if "?" in path else "?"
        while True:
            page = self.get(path + sep + "limit=200" + (f"&cursor={quote(cursor)}" if cursor else ""))
            items.extend(page.get("items") or [])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def put_block(self, number, scope, reason, deadline):
        path, body = devstack.block_request(number, scope, reason)
        attempts = []
        delay = 0.25
        while True:
            status, data = request("PUT", self.base + path, body, self.auth)
            attempts.append((status, time.time()))
            if status in (200, 201):
                return attempts
            if time.monotonic() > deadline:
                return attempts
            time.sleep(delay)
            delay = min(delay * 2, 3.0)


# ---------------------------------------------------------------- DynamoDB


def scan_claims(port, table):
    """Every idempotency claim item (pk W#…) of `table` (Messages)."""
    items, start = [], None
    while True:
        payload = {
            "TableName": table,
            "FilterExpression": "begins_with(pk, :w)",
            "ExpressionAttributeValues": {":w": {"S": "W#"}},
            "ConsistentRead": True,
        }
        if start:
            payload["ExclusiveStartKey"] = start
        out = devstack.dynamodb(port, "Scan", payload)
        items.extend(out.get("Items") or [])
        start = out.get("LastEvaluatedKey")
        if not start:
            return items


# ---------------------------------------------------------------- the run


class Run:
    def __init__(self, plan, stack, api, crm, graph, workers):
        self.plan = plan
        self.stack = stack
        self.api = api
        self.crm = crm
        self.graph = graph
        self.workers = workers
        self.lock = threading.Lock()
        self.next_job = 0
        self.results = {}  # job id -> outcome
        self.answers = collections.Counter()  # webhook answers by status
        self.send_answers = collections.Counter()
        self.stop = threading.Event()
        self.chaos_log = []
        self.extra_threads = []

    def take(self):
        with self.lock:
            if self.next_job >= len(self.plan.jobs):
                return None
            while self.next_job < len(self.plan.jobs) and self.plan.jobs[self.next_job].get("targeted"):
                self.next_job += 1
            if self.next_job >= len(self.plan.jobs):
                return None
            job = self.plan.jobs[self.next_job]
            self.next_job += 1
            return job

    def worker(self, t0, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            job = self.take()
            if job is None:
                return
            wait = t0 + job["at"] - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if job["kind"] == "delivery":
                    outcome = self.deliver(job, rng)
                elif job["kind"] == "send":
                    outcome = self.send(job, rng)
                else:
                    deadline = time.monotonic() + DELIVERY_DEADLINE
                    outcome = {"attempts": self.api.put_block(job["number"], job["scope"], "chaos: blocked during faults", deadline)}
            except Exception as error:  # a bug of this script, reported as a failure
                outcome = {"error": repr(error)}
            with self.lock:
                self.results[job["id"]] = outcome

    def deliver(self, job, rng, answered=None):
        """Posts a delivery until it is answered 2xx, as Meta does; sets
        `answered` after the first answer."""
        body = self.plan.payload(job)
        headers = devstack.webhook_headers(body)
        started = time.monotonic()
        attempts = []
        delay = 0.25
        while True:
            status, data = request("POST", self.stack.base + "/webhook", body, headers)
            attempts.append((round(time.monotonic() - started, 2), status, data[:160].decode(errors="replace"), time.time()))
            with self.lock:
                self.answers[status or "no answer"] += 1
            if answered is not None:
                answered.set()
            if status is not None and 200 <= status < 300:
                return {"ok": True, "attempts": attempts}
            if time.monotonic() - started > DELIVERY_DEADLINE:
                return {"ok": False, "attempts": attempts}
            time.sleep(delay * (0.5 + rng.random()))
            delay = min(delay * 2, 4.0)

    def send(self, job, rng):
        started = time.monotonic()
        attempts = []
        delay = 0.25
        while True:
            a = len(attempts)
            body = devstack.send_body(job["to"], f"Your order is on its way (chaos-send {job['n']}.{a})")
            status, data = request("POST", f"{self.stack.base}/v1/{job['business']}/messages", body, self.api.auth)
            attempts.append({"status": status, "body": json_or_none(data), "raw": data[:200], "at": time.time()})
            with self.lock:
                self.send_answers[status or "no answer"] += 1
            # 503: the blocklist could not be read and nothing was sent; a
            # caller tries again. Anything else is the send's answer.
            if status not in (None, 503) or time.monotonic() - started > DELIVERY_DEADLINE:
                return {"attempts": attempts}
            time.sleep(delay * (0.5 + rng.random()))
            delay = min(delay * 2, 4.0)

    def chaos(self, t0):
        dynamo = self.stack.dynamo
        for at, kind, seconds in self.plan.chaos:
            wait = t0 + at - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                return
            when = f"{time.monotonic() - t0:.1f}s ({datetime.datetime.now().strftime('%H:%M:%S.%f')[:-3]})"
            try:
                if kind == "pause":
                    dynamo.pause(seconds)
                    self.chaos_log.append(f"t={when} DynamoDB Local paused {seconds}s")
                else:
                    how = self.targeted_restart()
                    self.chaos_log.append(f"t={when} DynamoDB Local killed {how}, and restarted (down {dynamo.downtime:.1f}s)")
            except Exception as error:
                self.chaos_log.append(f"t={when} {kind} failed: {error!r}")

    def run_job(self, job, rng, answered=None):
        outcome = self.deliver(job, rng, answered)
        with self.lock:
            self.results[job["id"]] = outcome

    def spawn(self, job, rng, answered=None):
        thread = threading.Thread(target=self.run_job, args=(job, rng, answered), daemon=True)
        thread.start()
        self.extra_threads.append(thread)

    def targeted_restart(self):
        """Kills DynamoDB Local at the two moments that matter most: while
        the CRM is acknowledging a delivery (the ingress has forwarded it
        and has yet to record that), and while wa-blocked is handling a
        burst of delivery failures it has just read from the stream. Then
        starts it again."""
        plan, crm, dynamo = self.plan, self.crm, self.stack.dynamo
        rng = random.Random(plan.seed * 7)
        burst = next(j for j in plan.jobs if j.get("targeted") == "burst")
        companions = [j for j in plan.jobs if j.get("targeted") == "companion"]
        crm.force = {f"{s['id']}#{s['status']}" for s in burst["statuses"]}
        crm.force |= {m for j in companions for m in j["messages"]}
        crm.hold = {m for j in companions for m in j["messages"]}
        suffixes = [f'"number":"+*******{st["recipient"][-4:]}"'.encode() for st in burst["statuses"]]
        log_offset = self.stack.log_path.stat().st_size
        handled = threading.Event()
        stop = threading.Event()

        def watch():
            # wa-blocked names (masked) each number it auto-blocks, and
            # reports each record it could not handle.
            offset = log_offset
            deadline = time.monotonic() + 10
            while not stop.is_set() and time.monotonic() < deadline:
                with open(self.stack.log_path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                end = chunk.rfind(b"\n") + 1
                for line in chunk[:end].splitlines():
                    if b'"message":"record failed"' in line or (
                        b'"message":"auto_blocked"' in line and any(x in line for x in suffixes)
                    ):
                        handled.set()
                        return
                offset += end
                time.sleep(0.005)

        threading.Thread(target=watch, daemon=True).start()
        # The burst of failures, and meanwhile companions every 0.2 s, each
        # held at the CRM (up to 0.25 s), so that one is being acknowledged
        # when wa-blocked starts on the burst.
        self.spawn(burst, rng)
        waiting = list(companions)
        next_at = time.monotonic()
        give_up = next_at + 8
        while not handled.is_set() and time.monotonic() < give_up:
            if waiting and time.monotonic() >= next_at:
                self.spawn(waiting.pop(0), rng)
                next_at += 0.2
            time.sleep(0.002)
        until = time.monotonic() + 0.1
        while crm.holding == 0 and time.monotonic() < until:
            time.sleep(0.002)
        held = crm.holding > 0
        dynamo.kill()
        crm.release.set()
        crm.force, crm.hold = set(), set()
        stop.set()
        for job in waiting:
            self.spawn(job, rng)
        dynamo.start()
        killed = datetime.datetime.fromtimestamp(dynamo.killed_at).strftime("%H:%M:%S.%f")[:-3]
        return (
            f"at {killed} "
            + ("while the CRM acknowledged a companion delivery" if held else "(no companion held at the CRM)")
            + (" and wa-blocked handled the burst of failures" if handled.is_set() else " (wa-blocked not seen)")
        )

    def traffic(self):
        t0 = time.monotonic()
        threads = [threading.Thread(target=self.chaos, args=(t0,), daemon=True)]
        for w in range(self.workers):
            threads.append(threading.Thread(target=self.worker, args=(t0, self.plan.seed * 100 + w), daemon=True))
        for t in threads:
            t.start()
        deadline = t0 + self.plan.traffic + DELIVERY_DEADLINE + 60
        for t in threads[1:]:
            t.join(max(0.0, deadline - time.monotonic()))
        threads[0].join(max(0.0, deadline - time.monotonic()))
        for t in list(self.extra_threads):
            t.join(max(0.0, deadline - time.monotonic()))
        self.stop.set()
        return time.monotonic() - t0


# ---------------------------------------------------------------- the proof


class Checks:
    def __init__(self):
        self.passed = []
        self.failed = []
        self.excused = []

    def check(self, name, ok, details=(), excused=()):
        (self.passed if ok else self.failed).append(name)
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            for line in [d for d in details if d][:60]:
                print(f"       {line}")
        for line in excused:
            self.excused.append(line)
            print(f"       not counted, lost by DynamoDB Local at the kill: {line}")


def short(ids, n=12):
    ids = sorted(ids)
    return ", ".join(ids[:n]) + (f" … (+{len(ids) - n})" if len(ids) > n else "")


class KillWindow:
    """DynamoDB Local answers a TransactWriteItems some milliseconds before
    the write is durable: killed then, it loses a write it acknowledged
    (real DynamoDB never does). What the product was told had succeeded in
    this short window before the kill may therefore be gone. Only such
    items, shown to fall in it, are not held against the product."""

    BEFORE = 0.3  # seconds before the kill
    AFTER = 1.0  # an answer may leave the product a little after its last write

    def __init__(self, killed_at):
        self.killed_at = killed_at

    def covers(self, at, after=AFTER):
        return self.killed_at is not None and self.killed_at - self.BEFORE <= at <= self.killed_at + after

    def describe(self, at):
        return f"{(self.killed_at - at) * 1000:.0f} ms before the kill" if at <= self.killed_at else "right after the kill"


def auto_block_times(stack):
    """When wa-blocked reported each automatic block it wrote: the last four
    digits of the (masked) number -> the times of its metric lines."""
    times = collections.defaultdict(list)
    pending = None
    for line in stack.log_path.read_text(errors="replace").splitlines():
        entry = json_or_none(line) if line.startswith("{") else None
        if not entry:
            continue
        if entry.get("message") == "auto_blocked" and entry.get("number"):
            pending = entry["number"][-4:]
        elif pending and entry.get("Function") == "wa-blocked" and entry.get("auto_blocked"):
            times[pending].append(entry["_aws"]["Timestamp"] / 1000)
            pending = None
    return times


def verify(run, started_at, elapsed):
    plan, api, crm, graph, stack = run.plan, run.api, run.crm, run.graph, run.stack
    checks = Checks()
    window = KillWindow(stack.dynamo.killed_at)
    deliveries = [j for j in plan.jobs if j["kind"] == "delivery"]
    sends = [j for j in plan.jobs if j["kind"] == "send"]
    blocks = [j for j in plan.jobs if j["kind"] == "block"]
    allowed_ids = {m for m in plan.messages if not plan.message_blocked(m)}
    blocked_ids = set(plan.messages) - allowed_ids
    expected_statuses = {f"{s['id']}#{s['status']}" for s in plan.statuses}

    def attempts_of(job):
        return run.results.get(job["id"], {}).get("attempts") or []

    # The deliveries of each update, and those answered 2xx in the window.
    jobs_of = collections.defaultdict(list)
    for j in deliveries:
        for mid in j["messages"]:
            jobs_of[f"M#{mid}"].append(j)
        for st in j["statuses"]:
            jobs_of[f"S#{st['id']}#{st['status']}"].append(j)

    def done_at_kill(key):
        """A delivery of this update was answered 2xx in the kill window."""
        for j in jobs_of[key]:
            a = attempts_of(j)
            if run.results.get(j["id"], {}).get("ok") and window.covers(a[-1][3]):
                return f"{key[2:]} (delivery #{j['id']} answered 2xx {window.describe(a[-1][3])})"
        return None

    # Auto-blocks come through the stream poller: give it a moment.
    auto = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for number in plan.undeliverable:
            if number not in auto:
                record = api.get(f"/v1/blocks/{quote(number)}")
                found = [b for b in record.get("blocks") or [] if b.get("source") == "auto"]
                if found:
                    auto[number] = found
        if len(auto) == len(plan.undeliverable):
            break
        time.sleep(1)

    # 1. every delivery answered 2xx
    undelivered = [j for j in deliveries if not run.results.get(j["id"], {}).get("ok")]
    checks.check(
        "every delivery was eventually answered 2xx",
        not undelivered,
        [
            f"delivery #{j['id']} (t={j['at']:.1f}s, messages {short(j['messages'], 4)}, statuses {len(j['statuses'])}): "
            f"{run.results.get(j['id'], {}).get('error') or [a[:3] for a in attempts_of(j)[-3:]]}"
            for j in undelivered
        ],
    )

    # 2. allowed messages acknowledged exactly once
    acked = set(crm.acked)
    lost = allowed_ids - acked
    twice = {m for m, c in crm.acked.items() if c > 1}
    extra = acked - allowed_ids
    details = []
    if lost:
        details.append(f"lost (never acknowledged): {short(lost)}")
    if twice:
        details.append(f"acknowledged more than once: {short(twice)}")
        for mid in sorted(twice)[:4]:
            for r in crm.requests:
                if any(m[0] == mid for m in r["messages"]):
                    details.append(
                        f"  {mid}: CRM request at {datetime.datetime.fromtimestamp(r['t']).strftime('%H:%M:%S.%f')[:-3]}"
                        f" outcome={r['fault'] or 'acknowledged'} handled in {r.get('seconds', 0):.3f}s"
                        + (
                            " (close to CRM_TIMEOUT_MS: the ingress may have timed out first)"
                            if r["fault"] is None and r.get("seconds", 0) > CRM_TIMEOUT_MS / 1000 - 0.15
                            else ""
                        )
                    )
            for j in jobs_of[f"M#{mid}"]:
                details.append(f"  {mid}: in delivery #{j['id']}, answered (s after its start, status, body):")
                for at, status, body, _ in attempts_of(j):
                    details.append(f"      {at:6.2f} {status} {body[:110]}")
    if extra:
        details.append(f"acknowledged but not allowed: {short(extra)}")
    checks.check("every allowed message was acknowledged by the CRM exactly once", not (lost or twice or extra), details)

    # 3. statuses acknowledged exactly once
    acked_st = set(crm.acked_statuses)
    lost_st = expected_statuses - acked_st
    twice_st = {k for k, c in crm.acked_statuses.items() if c > 1}
    checks.check(
        "every status was acknowledged by the CRM exactly once",
        not (lost_st or twice_st or acked_st - expected_statuses),
        [f"lost: {short(lost_st)}" if lost_st else "", f"more than once: {short(twice_st)}" if twice_st else "",
         f"unexpected: {short(acked_st - expected_statuses)}" if acked_st - expected_statuses else ""],
    )

    # 4. nothing of a blocked sender reached the CRM, acknowledged or not
    leaks = []
    blocked_bsuids = {c["bsuid"]: c["number"] for c in plan.senders if c["bsuid"] and c["number"] in plan.pre_blocks}
    for r in crm.requests:
        for mid, business, _, _ in r["messages"]:
            if mid in blocked_ids:
                leaks.append(f"message {mid} (business {business}) in a CRM request, outcome {r['fault'] or 'acknowledged'}")
        for business, wa_id, user_id in r["contacts"]:
            number = "+" + wa_id if wa_id else blocked_bsuids.get(user_id)
            if number and plan.blocked_number(number, business):
                leaks.append(f"contact of blocked {number} (business {business}) in a CRM request")
    checks.check("no message of a blocked sender reached the CRM (even unacknowledged)", not leaks, leaks)
    checks.check(
        "every CRM request was signed with CRM_WEBHOOK_SECRET",
        crm.bad_signatures == 0,
        [f"{crm.bad_signatures} requests with a wrong X-Hub-Signature-256"],
    )

    # 5. the idempotency claims: none left pending, one done per update
    excused = []
    try:
        claims = scan_claims(stack.ddb_port, "Messages")
        pending = {c["pk"]["S"][2:] for c in claims if c.get("state", {}).get("S") != "done"}
        done = {c["pk"]["S"][2:] for c in claims if c.get("state", {}).get("S") == "done"}
        want = {f"M#{m}" for m in plan.messages} | {f"S#{k}" for k in expected_statuses}
        bad = (want - done) | pending
        for key in sorted(bad):
            reason = done_at_kill(key)
            if reason:
                excused.append(f"claim of {reason}")
                bad.discard(key)
        claim_details = [f"not done: {short(bad)}", f"unexpected: {short(done - want)}"]
        claims_ok = not bad and done <= want
    except Exception as error:
        claims_ok, claim_details = False, [f"could not scan DynamoDB Local: {error!r}"]
    checks.check("every update has exactly its claim, done (DynamoDB Local scan)", claims_ok, claim_details, excused)

    # 6. sends: refused exactly when blocked, and nothing refused reached Graph
    refused = 0
    refused_in_window = collections.Counter()
    send_problems = []
    for job in sends:
        attempts = attempts_of(job)
        if not attempts:
            send_problems.append(f"send {job['n']}: no answer at all ({run.results.get(job['id'])})")
            continue
        final = attempts[-1]
        for a, attempt in enumerate(attempts):
            if attempt["status"] == 403:
                refused += 1
                if window.covers(attempt["at"]):
                    refused_in_window[job["to"]] += 1
            reached = graph.sends.get((job["n"], a))
            if reached and (job["refused"] or attempt["status"] in (403, 503)):
                send_problems.append(f"send {job['n']}.{a} to {job['to']} reached Graph but was answered {attempt['status']}")
        if job["refused"]:
            reason = (((final["body"] or {}).get("error") or {}).get("error_data") or {}).get("reason")
            if final["status"] != 403 or reason != "recipient_blocked":
                send_problems.append(f"send {job['n']} to blocked {job['to']} from {job['business']}: {final['status']} {final['raw']!r}")
        else:
            reached = graph.sends.get((job["n"], len(attempts) - 1))
            status = final["status"]
            if status in (403, 503, None):
                send_problems.append(f"send {job['n']} to allowed {job['to']}: {status} {final['raw']!r}")
            elif not reached:
                send_problems.append(f"send {job['n']} to allowed {job['to']}: answered {status} but never reached Graph")
            else:
                expect = {None: 200, "graph_500": 502, "graph_timeout": 504}[reached["fault"]]
                ids = [m.get("id") for m in ((final["body"] or {}).get("messages") or [])]
                if status != expect or (expect == 200 and ids != [reached["message_id"]]):
                    send_problems.append(f"send {job['n']}: Graph {reached['fault'] or 'accepted'}, proxy answered {status} {final['raw']!r}")
    if graph.unexpected:
        send_problems.append(f"unexpected requests at Graph: {graph.unexpected[:3]}")
    checks.check("sends: blocked recipients refused (403) and never sent; others passed through", not send_problems, send_problems)

    # 7. every refusal audited, in the feed and in each number's history
    since = (started_at - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    refused_events = api.pages(f"/v1/audit?action=outbound_refused&since={since}")
    per_number = collections.Counter()
    for job in sends:
        per_number[job["to"]] += sum(1 for a in attempts_of(job) if a["status"] == 403)
    histories = {}
    for number in sorted(set(plan.pre_blocks) | set(plan.chaos_blocks) | set(plan.undeliverable) | set(per_number)):
        histories[number] = api.pages(f"/v1/numbers/{quote(number)}/history")
    problems, excused = [], []
    history_refused = 0
    # The send proxy says when it refused without recording the refusal:
    # those are never put down to DynamoDB Local.
    not_recorded = log_count(stack, "outbound_refused not recorded")
    excusable = max(0, sum(refused_in_window.values()) - not_recorded)
    for number, count in sorted(per_number.items()):
        seen = sum(1 for e in histories[number] if e.get("action") == "outbound_refused")
        history_refused += seen
        if seen > count or count - seen > min(refused_in_window[number], excusable):
            problems.append(f"{number}: {count} refusals answered, {seen} outbound_refused in its history")
        elif seen < count:
            excused.append(f"{count - seen} refusal(s) of {number} answered 403 in the kill window")
    unaudited = refused - len(refused_events)
    if unaudited < 0 or unaudited > excusable or history_refused != len(refused_events):
        problems.append(f"{refused} refusals answered, {len(refused_events)} outbound_refused events in /v1/audit, {history_refused} in histories")
        if not_recorded:
            problems.append(f"the send proxy logged 'outbound_refused not recorded' {not_recorded} time(s): refused (403) without its audit event")
    checks.check("every refused send is audited (audit feed and each number's history)", not problems, problems, excused)

    # 8. every suppression audited once
    suppressed_events = api.pages(f"/v1/audit?action=inbound_suppressed&since={since}")
    suppressed_ids = collections.Counter((e.get("details") or {}).get("message_id") for e in suppressed_events)
    missing = blocked_ids - set(suppressed_ids)
    excused = []
    for mid in sorted(missing):
        reason = done_at_kill(f"M#{mid}")
        if reason:
            excused.append(f"suppression of {reason}")
            missing.discard(mid)
    lost_suppressions = len(blocked_ids - set(suppressed_ids)) - len(missing)
    twice = {m for m, c in suppressed_ids.items() if c > 1}
    checks.check(
        "every message of a blocked sender is audited inbound_suppressed exactly once",
        not missing and not twice and set(suppressed_ids) <= blocked_ids,
        [f"missing: {short(missing)}" if missing else "", f"twice: {short(twice)}" if twice else "",
         f"unexpected: {short(set(suppressed_ids) - blocked_ids)}" if set(suppressed_ids) - blocked_ids else ""],
        excused,
    )

    # 9. every 131026 failure auto-blocked its number (B40, B43)
    failure_of = {s["recipient"]: s for s in plan.statuses if s["status"] == "failed"}
    reported = auto_block_times(stack)
    missing_auto, excused, auto_details = [], [], []
    for number in sorted(set(plan.undeliverable) - set(auto)):
        times = [t for t in reported.get(number[-4:], []) if window.covers(t, after=0.1)]
        if times:
            excused.append(f"automatic block of {number}, written by wa-blocked {window.describe(times[0])}")
            continue
        missing_auto.append(number)
        job = next(j for j in deliveries if any(s is failure_of[number] for s in j["statuses"]))
        auto_details.append(
            f"{number}: failed status of {failure_of[number]['id']} (delivery #{job['id']} at t={job['at']:.1f}s, "
            f"answered {[a[1] for a in attempts_of(job)]}), never auto-blocked"
        )
    if missing_auto:
        auto_details += dropped_records(stack)
    checks.check("every 131026 delivery failure auto-blocked its number", not missing_auto, auto_details, excused)

    # 10. blocks: each with its one event, each event with its block
    listed = api.pages("/v1/blocks")
    got = {(b.get("subject") or b.get("number"), b.get("scope"), b.get("source")) for b in listed}
    want = {(n, s, "manual") for n, s in plan.pre_blocks.items()}
    excused = []
    for job in blocks:
        key = (job["number"], job["scope"], "manual")
        answers = run.results.get(job["id"], {}).get("attempts") or []
        if key not in got and answers and answers[-1][0] in (200, 201) and window.covers(answers[-1][1]):
            excused.append(f"block of {job['number']} answered {answers[-1][0]} {window.describe(answers[-1][1])}")
        else:
            want.add(key)
    manual = {b for b in got if b[2] != "auto"}
    listed_auto = {b for b in got if b[2] == "auto"}
    half = []
    for subject, scope, source in sorted(got, key=str):
        action = "auto_blocked" if source == "auto" else "blocked"
        history = histories.get(subject) or api.pages(f"/v1/numbers/{quote(subject)}/history")
        events = [e for e in history if e.get("action") == action and e.get("scope") == scope]
        if len(events) != 1:
            half.append(f"{subject} scope {scope}: {len(events)} '{action}' events in its history")
    blocked_events = api.pages(f"/v1/audit?action=blocked&since={since}")
    auto_events = api.pages(f"/v1/audit?action=auto_blocked&since={since}")
    pairs = {(s, sc) for s, sc, _ in got}
    for e in blocked_events + auto_events:
        key = (e.get("subject") or e.get("number"), e.get("scope"))
        if key not in pairs:
            half.append(f"'{e.get('action')}' event of {key[0]} scope {key[1]} without its block")
    if len(blocked_events) != len(manual) or len(auto_events) != len(listed_auto):
        half.append(
            f"{len(blocked_events)} blocked events for {len(manual)} manual blocks, "
            f"{len(auto_events)} auto_blocked events for {len(listed_auto)} automatic blocks"
        )
    if {(n, sc) for n, sc, _ in listed_auto} != {(n, b.get("scope")) for n, bs in auto.items() for b in bs}:
        half.append(f"automatic blocks listed {sorted(listed_auto)} differ from those read one by one {sorted(auto)}")
    checks.check(
        "no half write: every block the run made, each with its one event, each event with its block",
        manual == want and not half,
        [f"missing blocks: {sorted(want - manual)}" if want - manual else "",
         f"unexpected blocks: {sorted(manual - want)}" if manual - want else ""] + half,
        excused,
    )

    # 11. stats agree with what the run did and with what is stored
    today = datetime.datetime.now(datetime.UTC).date()
    stats = api.get(f"/v1/stats?from={started_at.date().isoformat()}&to={today.isoformat()}")
    total = collections.Counter()
    for day in stats.get("days") or []:
        for k in ("blocked", "unblocked", "auto_blocked", "inbound_suppressed", "outbound_refused"):
            total[k] += day.get(k) or 0
    unaudited_in_window = max(0, min(refused - len(refused_events), excusable))
    expect = {
        "blocked": len(want),
        "unblocked": 0,
        "auto_blocked": len(auto_events),
        "inbound_suppressed": len(blocked_ids) - lost_suppressions,
        "outbound_refused": refused - unaudited_in_window,
        "currently_blocked": len({subject for subject, _, _ in got}),
    }
    total["currently_blocked"] = stats.get("currently_blocked")
    wrong = [f"{k}: stats say {total[k]}, expected {v}" for k, v in expect.items() if total[k] != v]
    checks.check(
        "GET /v1/stats agrees (blocked, suppressed, refused by the run; auto_blocked, currently_blocked as stored)",
        not wrong,
        wrong,
    )

    # 12. the stack survived the restart
    late_numbers = {
        s["recipient"]
        for j in deliveries
        if j["at"] > plan.restart_at + 1
        for s in j["statuses"]
        if s["status"] == "failed"
    }
    survived = stack.running() and stack.dynamo.counts["ddb_restart"] == 1 and late_numbers <= set(auto)
    checks.check(
        "scripts/dev survived the DynamoDB Local restart (still serving; failures after it auto-blocked)",
        survived,
        [
            f"scripts/dev running: {stack.running()}; restarts done: {stack.dynamo.counts['ddb_restart']}",
            f"failed after the restart, not auto-blocked: {sorted(late_numbers - set(auto))}",
        ],
    )

    # Counts.
    attempts = sum(len(attempts_of(j)) for j in deliveries)
    faults = collections.Counter()
    faults.update(crm.faults.counts)
    faults.update(graph.faults.counts)
    faults.update(stack.dynamo.counts)
    print()
    print(f"  traffic took {elapsed:.0f}s; {run.workers} workers; seed {plan.seed}")
    for line in run.chaos_log:
        print(f"  {line}")
    print(
        f"  deliveries {len(deliveries)} ({sum(1 for j in deliveries if j.get('duplicate'))} sent twice), "
        f"attempts {attempts}, redeliveries {attempts - len(deliveries)}"
    )
    print(
        f"  messages {len(plan.messages)} ({plan.rebatched} again in a later batch; {len(allowed_ids)} allowed, "
        f"{len(blocked_ids)} from blocked senders), statuses {len(expected_statuses)}, sends {len(sends)}, "
        f"blocks beforehand {len(plan.pre_blocks)}, blocks during faults {len(blocks)}"
    )
    print(f"  webhook answers {dict(sorted(run.answers.items(), key=str))}")
    print(f"  send answers {dict(sorted(run.send_answers.items(), key=str))}")
    print(f"  faults injected {dict(sorted(faults.items()))}")
    print(
        f"  forwarded {len(crm.acked)} messages + {len(crm.acked_statuses)} statuses acknowledged "
        f"(in {len(crm.requests)} CRM requests), suppressed {len(suppressed_ids)}, refused {refused}, "
        f"auto-blocked {len(auto)}"
    )
    if checks.excused:
        print(f"  DynamoDB Local lost {len(checks.excused)} write(s) it had acknowledged just before the kill (not counted)")
    return checks


def log_count(stack, message):
    """How many of the stack's JSON log lines carry this message."""
    needle = f'"message":"{message}"'
    return sum(1 for line in stack.log_path.read_text(errors="replace").splitlines() if needle in line)


def dropped_records(stack):
    """The stream poller's lines about records it gave up on, and the
    wa-blocked failures before them."""
    lines = []
    for line in stack.log_path.read_text(errors="replace").splitlines():
        entry = json_or_none(line) if line.startswith("{") else None
        if entry and entry.get("message") in ("record failed", "wa-blocked failed the whole batch") or (
            entry and "dropped" in (entry.get("message") or "")
        ):
            lines.append("log: " + line[:220])
    return lines[-8:]


def error_summary(stack):
    """The product's error and warning lines, counted by message."""
    counts = collections.Counter()
    for line in stack.log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json_or_none(line) or {}
        if entry.get("level") in ("ERROR", "WARN"):
            counts[(entry.get("level"), entry.get("message"), entry.get("error", "")[:120])] += 1
    return [f"{n:4d} {level} {message} {error}".rstrip() for (level, message, error), n in counts.most_common(15)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "11")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("CHAOS_WORKERS", "8")))
    parser.add_argument("--messages", type=int, default=int(os.environ.get("CHAOS_MESSAGES", "300")))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", "60")), help="traffic duration")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = parser.parse_args()

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    work = Path(tempfile.mkdtemp(prefix="wa-chaos-"))
    plan = Plan(args.seed, args.messages, args.seconds)
    crm, graph = Crm(args.seed + 1), Graph(args.seed + 2)
    devstack.serve(crm.server)
    devstack.serve(graph.server)
    stack = Stack(work, crm, graph)
    checks = None
    try:
        log(f"starting scripts/dev on {stack.base} (DynamoDB Local on {stack.ddb_port}, data in {work})")
        phase = time.monotonic()
        stack.start()
        log(f"stack up in {time.monotonic() - phase:.0f}s")
        api = Api(stack.base, stack.token("chaos-run"))
        started_at = datetime.datetime.now(datetime.UTC)
        deadline = time.monotonic() + 60
        for number, scope in plan.pre_blocks.items():
            attempts = api.put_block(number, scope, "chaos: blocked beforehand", deadline)
            if attempts[-1][0] != 201:
                raise RuntimeError(f"blocking {number} beforehand: {attempts}")
        log(
            f"{len(plan.jobs)} jobs over {args.seconds:.0f}s with {args.workers} workers; "
            f"faults: CRM {CRM_FAULTS}, Graph {GRAPH_FAULTS}, DynamoDB Local {[(round(a), k, s) for a, k, s in plan.chaos]}"
        )
        run = Run(plan, stack, api, crm, graph, args.workers)
        elapsed = run.traffic()
        log(f"traffic done in {elapsed:.0f}s; checking")
        phase = time.monotonic()
        checks = verify(run, started_at, elapsed)
        log(f"checked in {time.monotonic() - phase:.0f}s")
        if checks.failed:
            print("\n  product errors and warnings logged (count, level, message):")
            for line in error_summary(stack):
                print(f"  {line}")
    except KeyboardInterrupt:
        log("interrupted")
    except Exception as error:
        log(f"the run could not complete: {error}")
    finally:
        stack.stop()
        crm.server.shutdown()
        graph.server.shutdown()
        ok = checks is not None and not checks.failed
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs and data kept in {work} (scripts/dev log: {stack.log_path})")
    if checks is None:
        print("chaos: 0 passed, 1 failed (the run did not complete)")
        return 1
    print(
        f"chaos: {len(checks.passed)} passed, {len(checks.failed)} failed"
        + (f" (failed: {'; '.join(checks.failed)})" if checks.failed else "")
    )
    return 0 if not checks.failed else 1


if __name__ == "__main__":
    sys.exit(main())
