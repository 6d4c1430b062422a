#!/usr/bin/env python3
"""Load figures of the local stack (SPEC S5), as ratios to DynamoDB Local.

Starts scripts/dev on free ports with a temporary DEV_DATA_DIR, pointed at a
CRM fake and a Graph fake that answer 200 at once, and measures:

- single-message webhook deliveries per second at concurrency 16 (distinct
  message ids and senders, some senders blocked beforehand), with p50/p99
  latency;
- sends per second through the send proxy at concurrency 16;
- the time to answer one 1,000-message delivery (Meta's maximum), median of
  several runs with fresh ids and senders;
- the time to import N numbers through POST /v1/blocks:batch.

Each figure is divided by DynamoDB Local's raw rate, measured on a scratch
table of the very DynamoDB Local the stack uses, just before and just after
the figure: the machine is shared and noisy, so only the ratio means
something from one run to the next. The CPU time of the stack, DynamoDB
Local and this script during each figure is printed with it. Targets are
printed next to the ratios, never asserted: the exit status is 0 when every
request got the answer it should (missed targets included), 1 when some did
not, 2 when the run could not complete.

    scripts/bench/load [--quick] [--deliveries N] [--sends N] [--large-runs N]
                       [--import N] [--keep]

Standard library only; the stack, its fakes and DynamoDB Local's API are
driven through scripts/lib/devstack.py, as tests/chaos.py drives them.
"""

import argparse
import collections
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))
import devstack  # noqa: E402  (the local stack and its fakes, shared with tests/chaos.py)
from devstack import BUSINESSES, GRAPH_VERSION, Conn, StackError  # noqa: E402

# The concurrency S5 names for single deliveries and sends.
CONCURRENCY = 16
# Requests in flight for one delivery inside the ingress (CONCURRENCY in
# shared/src/store/batch.rs): the raw conditional puts run at the same.
INGRESS_CONCURRENCY = 32
# Meta's maximum updates per delivery (B29).
LARGE_DELIVERY = 1000
# The block API's limit per batch (MAX_BATCH in functions/block-api/src/blocks.rs).
IMPORT_BATCH = 1000
IMPORT_IN_FLIGHT = 4
# Raw baselines taken along a long import, at most this many segments.
IMPORT_SEGMENTS = 8
RAW_CONDITIONAL_PUTS = 1000
# Put+get pairs of a baseline at least: fewer last too short to be steady.
MIN_RAW_PAIRS = 300

# Shares of senders blocked beforehand (scope all). Sends go to the senders
# of the single deliveries, so the same share of them is refused (403).
SINGLE_BLOCKED_EVERY = 8
LARGE_BLOCKED_EVERY = 10

TARGET_SINGLE_RATIO = 0.45  # deliveries/s over raw put+get pairs/s, at least
TARGET_LARGE_RATIO = 2.5  # 1,000-message delivery over 1,000 raw conditional puts, at most

# Numbers the project's validation accepts: US area code, then an exchange
# and line in [2-9]\d{6} (libphonenumber's pattern for these area codes).
# Each use gets its own area code so that no two phases share a person.
AREA_WARMUP = 628
AREA_SINGLE = 650
AREA_LARGE = 415
AREA_IMPORT = 212
AREA_IMPORT_WARMUP = 213
NUMBERS_PER_AREA = 10_000_000 - 5_550_000


def log(message):
    print(f"==> load: {message}", file=sys.stderr, flush=True)


def us_number(area, k):
    """The k-th number of an area code, from +1 AAA 555 0000 on."""
    if not 0 <= k < NUMBERS_PER_AREA:
        raise ValueError(f"no number {k} in area {area}")
    return f"+1{area}{5_550_000 + k}"


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


# ---------------------------------------------------------------- measured phases


class Phase:
    """What one measured phase did: wall time, per-job latencies, failures."""

    def __init__(self, wall, latencies, errors):
        self.wall = wall
        self.latencies = latencies
        self.errors = errors
        self.cpu = None  # (wall, {process: CPU seconds}) when measured

    @property
    def count(self):
        return len(self.latencies)

    @property
    def rate(self):
        return self.count / self.wall if self.wall > 0 else float("inf")


def hammer(jobs, concurrency, make_client, run_job):
    """Runs `run_job(client, job)` for every job on `concurrency` threads,
    each with its own client from `make_client()`. A job returns an error
    text, or None when it got the answer it should. All threads start
    together, so the wall time is the phase's and not the thread start-up's."""
    lock = threading.Lock()
    next_job = [0]
    latencies, errors = [], []
    ended = []
    workers = min(concurrency, max(1, len(jobs)))
    start = threading.Barrier(workers + 1)

    def worker():
        client = make_client()
        start.wait()
        try:
            while True:
                with lock:
                    i = next_job[0]
                    next_job[0] += 1
                if i >= len(jobs):
                    break
                t0 = time.perf_counter()
                try:
                    error = run_job(client, jobs[i])
                except (OSError, http.client.HTTPException) as e:
                    error = f"no answer: {type(e).__name__}: {e}"
                except ValueError as e:  # an answer that is not the JSON it should be
                    error = f"unreadable answer: {e}"
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    if error:
                        errors.append(error)
        finally:
            client.close()
            with lock:
                ended.append(time.perf_counter())

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return Phase(max(ended) - t0, latencies, errors)


# ---------------------------------------------------------------- DynamoDB Local


class Dynamo:
    """DynamoDB's JSON API on the stack's DynamoDB Local, on a scratch table
    of its own."""

    def __init__(self, port):
        self.port = port
        self.table = f"bench-scratch-{secrets.token_hex(4)}"
        self.created = False
        # A value the size of a typical block or claim item.
        self.payload = "x" * 200

    def client(self):
        return Conn("127.0.0.1", self.port, timeout=30.0)

    def call(self, conn, target, payload):
        """(error or None, decoded answer), for a phase that counts errors."""
        try:
            return None, devstack.dynamodb(self.port, target, payload, conn)
        except StackError as error:
            return str(error), None

    def call_once(self, target, payload):
        """A call outside any phase: StackError when it fails."""
        return devstack.dynamodb(self.port, target, payload, timeout=30.0)

    def create_table(self):
        self.call_once(
            "CreateTable",
            {
                "TableName": self.table,
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
        self.created = True
        for _ in range(100):
            out = self.call_once("DescribeTable", {"TableName": self.table})
            if out["Table"]["TableStatus"] == "ACTIVE":
                return
            time.sleep(0.1)
        raise StackError(f"scratch table {self.table} never became ACTIVE")

    def delete_table(self):
        if self.created:
            self.call_once("DeleteTable", {"TableName": self.table})
            self.created = False

    def put_get_pairs(self, keys, concurrency=CONCURRENCY):
        """A PutItem and a strongly consistent GetItem of the same key per
        job, at the concurrency of the single deliveries: the least a
        delivery or a send costs (read the person's blocks, write a record)."""

        def pair(conn, key):
            item = {"pk": {"S": key}, "v": {"S": self.payload}}
            error, _ = self.call(conn, "PutItem", {"TableName": self.table, "Item": item})
            if error:
                return error
            error, out = self.call(conn, "GetItem", {"TableName": self.table, "Key": {"pk": {"S": key}}, "ConsistentRead": True})
            if not error and "Item" not in out:
                error = f"GetItem of {key} found nothing just after its PutItem"
            return error

        return hammer(keys, concurrency, self.client, pair)

    def delivery_calls(self, keys, concurrency=CONCURRENCY):
        """Per job, the DynamoDB calls a single forwarded message costs the
        ingress (tests/tests/integration/webhook_ingress/delivery.rs,
        s5_a_single_message_costs_one_read_and_its_writes_in_two_rounds),
        made raw on the scratch table: a consistent BatchGetItem of 4 keys
        (the sender's blocks in `all` and in the business number, contact,
        state), the claim's conditional put, its completion and the chat's
        stamp (two updates). What the stack adds to these is its own cost;
        these alone bound the ratio a delivery can reach."""

        def calls(conn, key):
            keys = [{"pk": {"S": f"{key}#{sk}"}} for sk in ("B#all", "B#line", "CONTACT", "STATE")]
            error, _ = self.call(conn, "BatchGetItem", {"RequestItems": {self.table: {"Keys": keys, "ConsistentRead": True}}})
            if error:
                return error
            item = {"pk": {"S": f"{key}#W"}, "v": {"S": self.payload}}
            error, _ = self.call(conn, "PutItem", {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"})
            for sk, value in (("W", "done"), ("CHAT", "active")):
                if error:
                    return error
                update = {
                    "TableName": self.table,
                    "Key": {"pk": {"S": f"{key}#{sk}"}},
                    "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "state"},
                    "ExpressionAttributeValues": {":s": {"S": value}},
                }
                error, _ = self.call(conn, "UpdateItem", update)
            return error

        return hammer(keys, concurrency, self.client, calls)

    def conditional_puts(self, keys, concurrency=INGRESS_CONCURRENCY):
        """PutItem with attribute_not_exists(pk) on fresh keys, the way the
        ingress claims each update, at its concurrency."""

        def put(conn, key):
            item = {"pk": {"S": key}, "v": {"S": self.payload}}
            payload = {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
            return self.call(conn, "PutItem", payload)[0]

        return hammer(keys, concurrency, self.client, put)


# ---------------------------------------------------------------- the fakes


class Endpoints:
    """The CRM's webhook (POST /crm/webhook) and Graph's send endpoint
    (POST /graph/{version}/{phone_number_id}/messages) on one server: check
    what a real one checks, count, and answer 200 at once. GET /counts
    tells the counts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()

    def count(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def get(self, handler):
        if handler.path == "/counts":
            with self.lock:
                handler.answer(200, dict(self.counts))
        else:
            handler.answer(404, {})

    def post(self, handler):
        body = handler.body()
        path = handler.path.split("?")[0]
        if path == "/crm/webhook":
            if not handler.crm_signed(body):
                self.count("crm_bad_signature")
                handler.answer(401, {"error": "bad signature"})
                return
            messages = sum(len(value.get("messages") or []) for value in devstack.webhook_values(json.loads(body)))
            self.count("crm_requests")
            self.count("crm_messages", messages)
            handler.answer(200, {"received": messages})
            return
        parts = [p for p in path.split("/") if p]
        if len(parts) == 4 and parts[:2] == ["graph", GRAPH_VERSION] and parts[3] == "messages":
            if not handler.graph_authorized():
                self.count("graph_bad_token")
                return
            self.count("graph_sends")
            handler.graph_sent(json.loads(body).get("to") or "", f"wamid.BENCHGRAPH.{secrets.token_hex(8)}")
            return
        self.count("unexpected")
        handler.answer(404, {"error": "unexpected request"})


def serve_fakes():
    """`load.py --serve-fakes`: the fakes in a process of their own, so that
    their threads do not take the load generator's GIL while the stack is
    measured (the raw baseline runs without them). Prints the port."""
    endpoints = Endpoints()
    server = devstack.fake_server(endpoints.post, endpoints.get)
    # Ctrl-C reaches this process too; the parent stops it when done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(server.server_address[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


class Fakes:
    """The process serve_fakes() runs in."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-fakes"],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise StackError("the CRM and Graph fakes did not start")
        self.port = int(line)
        self.base = f"http://127.0.0.1:{self.port}"

    def counts(self):
        status, data = devstack.request("GET", self.base + "/counts", timeout=5.0)
        return json.loads(data) if status == 200 else {}

    def stop(self):
        devstack.terminate(self.proc, 10)


# ---------------------------------------------------------------- CPU


class CpuMeter:
    """CPU time each process spent during a phase. On a machine of few CPUs
    a figure is only read right with it: it tells whether the stack,
    DynamoDB Local or this load generator was the one busy."""

    def __init__(self, stack, fakes):
        pids = {
            "load generator": os.getpid(),
            "fakes": fakes.proc.pid,
            # scripts/dev's children: the wa-dev binary and DynamoDB Local's JVM.
            "stack": stack.api_pid(),
            "DynamoDB Local": stack.dynamodb_pid(),
        }
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}

    def snapshot(self):
        return time.perf_counter(), {name: devstack.cpu_seconds(pid) for name, pid in self.pids.items()}

    def used(self, before):
        """(wall seconds, {process: CPU seconds}) since a snapshot."""
        (t0, start), (t1, end) = before, self.snapshot()
        return t1 - t0, {
            name: end[name] - start[name]
            for name in start
            if start[name] is not None and end.get(name) is not None
        }

    @staticmethod
    def describe(wall, used):
        """'' where /proc is not there to tell."""
        parts = [f"{name} {used[name]:.1f}" for name in ("stack", "DynamoDB Local", "load generator", "fakes") if name in used]
        return f"cpu s over {wall:.1f} s wall ({os.cpu_count()} CPUs): " + ", ".join(parts) if parts else ""


# ---------------------------------------------------------------- Meta's payloads


def delivery_body(messages, changes_per_entry=None):
    """A webhook body, as Meta shapes it, for (business, number, id, text)
    messages: one change per run of messages of one business number, the
    changes grouped into entries of `changes_per_entry`."""
    now = str(int(time.time()))
    runs = []  # (business, contacts by number, messages)
    for business, number, mid, text in messages:
        if not runs or runs[-1][0] != business:
            runs.append((business, {}, []))
        _, contacts, items = runs[-1]
        contacts.setdefault(number, devstack.contact(number, f"Customer {number[-4:]}"))
        items.append(devstack.text_message(number, mid, now, text))
    changes = [devstack.change(business, contacts.values(), items) for business, contacts, items in runs]
    return devstack.webhook_body(changes, changes_per_entry)


# ---------------------------------------------------------------- the run


class Bench:
    def __init__(self, args, stack, fakes, dynamo):
        self.args = args
        self.cpu = CpuMeter(stack, fakes)
        self.stack = stack
        self.fakes = fakes
        self.dynamo = dynamo
        self.run_id = secrets.token_hex(3)
        self.auth = devstack.bearer(stack.token("bench-load"))
        self.failures = {}  # what -> [requests that did not get the answer they should, first error]
        self.figures = []  # (name, figure text, ratio text, target text, met or None)
        self.forwarded = 0  # messages the ingress said it forwarded
        self.rates = {}  # figure name -> its rate, per second
        self.keys = 0

    # -- helpers

    def fresh_keys(self, n, kind):
        start = self.keys
        self.keys += n
        return [f"{kind}#{self.run_id}#{k}" for k in range(start, start + n)]

    def fail(self, what, errors):
        if errors:
            entry = self.failures.setdefault(what, [0, errors[0]])
            entry[0] += len(errors)
            log(f"{what}: {len(errors)} request(s) failed, e.g. {errors[0]}")

    def show_cpu(self, wall, used):
        """The CPU line of a figure, under it."""
        text = CpuMeter.describe(wall, used)
        if text:
            print(f"  {'':<28}{'':>12}   {text}", flush=True)

    def show(self, name, figure, ratio="", target=None, met=None, summary=True):
        """Prints a figure; those with `summary` are listed again at the end
        (baselines are not)."""
        target_text = f"(target {target})" if target else ""
        print(f"  {name:<28}{figure:>12}   {ratio:<38}{target_text}", flush=True)
        if summary:
            self.figures.append((name, figure, ratio, target_text, met))

    def block(self, numbers):
        """PUT /v1/blocks/{number} (scope all) for each, 16 at once."""

        def put(conn, number):
            path, body = devstack.block_request(number, "all", "bench: blocked beforehand")
            status, data = conn.request("PUT", path, body, self.auth)
            return None if status in (200, 201) else f"PUT /v1/blocks/{number}: {status} {data[:200]!r}"

        phase = hammer(numbers, CONCURRENCY, self.stack.client, put)
        self.fail("blocking beforehand", phase.errors)
        return phase

    def deliver(self, conn, job):
        """POSTs one delivery; checks its answer against what it holds."""
        body, forwarded, suppressed = job
        status, data = conn.request("POST", "/webhook", body, devstack.webhook_headers(body))
        if not 200 <= status < 300:
            return f"POST /webhook: {status} {data[:200]!r}"
        answer = json.loads(data)
        got = (answer.get("forwarded"), answer.get("suppressed"))
        if got != (forwarded, suppressed):
            return f"POST /webhook answered forwarded/suppressed {got}, expected {(forwarded, suppressed)}"
        return None

    def single_jobs(self, area, n, blocked_every, tag):
        jobs = []
        for i in range(n):
            number = us_number(area, i)
            mid = f"wamid.BENCH.{self.run_id}.{tag}{i:06d}"
            blocked = i % blocked_every == 0
            body = delivery_body([(BUSINESSES[i % 2], number, mid, f"hello {i}")])
            jobs.append((body, 0 if blocked else 1, 1 if blocked else 0))
        return jobs

    def send_jobs(self, area, n, blocked_every):
        """Sends to the senders of the single deliveries; those blocked
        beforehand are refused."""
        jobs = []
        for i in range(n):
            number = us_number(area, i % self.args.deliveries)
            body = devstack.send_body(number, f"Your order {i} is on its way")
            blocked = (i % self.args.deliveries) % blocked_every == 0
            jobs.append((BUSINESSES[i % 2], body, 403 if blocked else 200))
        return jobs

    def send(self, conn, job):
        business, body, expected = job
        status, data = conn.request("POST", f"/v1/{business}/messages", body, self.auth)
        if status != expected:
            return f"POST /v1/{business}/messages: {status} (expected {expected}) {data[:200]!r}"
        return None

    def raw_put_get(self):
        """A put+get baseline, with the CPU time it took."""
        cpu = self.cpu.snapshot()
        n = max(self.args.deliveries, self.args.sends, MIN_RAW_PAIRS)
        phase = self.dynamo.put_get_pairs(self.fresh_keys(n, "pg"))
        self.fail("raw put+get", phase.errors)
        phase.cpu = self.cpu.used(cpu)
        return phase

    def raw_delivery_calls(self):
        cpu = self.cpu.snapshot()
        n = max(self.args.deliveries, MIN_RAW_PAIRS)
        phase = self.dynamo.delivery_calls(self.fresh_keys(n, "dc"))
        self.fail("raw delivery calls", phase.errors)
        phase.cpu = self.cpu.used(cpu)
        return phase

    def raw_writes(self):
        """Conditional puts alone at the concurrency of single deliveries:
        the write rate the three writes of a forwarded message share."""
        cpu = self.cpu.snapshot()
        n = max(self.args.deliveries, MIN_RAW_PAIRS)
        phase = self.dynamo.conditional_puts(self.fresh_keys(n, "w"), concurrency=CONCURRENCY)
        self.fail("raw writes", phase.errors)
        phase.cpu = self.cpu.used(cpu)
        return phase

    def raw_conditional_puts(self):
        cpu = self.cpu.snapshot()
        phase = self.dynamo.conditional_puts(self.fresh_keys(RAW_CONDITIONAL_PUTS, "cp"))
        self.fail("raw conditional puts", phase.errors)
        phase.cpu = self.cpu.used(cpu)
        return phase

    def show_baseline(self, name, phases, figure, detail):
        """The baseline of a figure: the raw rate measured just before it
        and just after it, so that a drift of the machine during the figure
        weighs on both sides of the ratio alike."""
        self.show(name, figure, detail, summary=False)
        used = {}
        for phase in phases:
            for k, seconds in phase.cpu[1].items():
                used[k] = used.get(k, 0.0) + seconds
        self.show_cpu(wall=sum(p.cpu[0] for p in phases), used=used)

    # -- phases

    def warm_up(self):
        """DynamoDB Local's JVM and the stack's first requests are slow;
        every path is taken a few times before anything is measured."""
        t0 = time.monotonic()
        self.dynamo.put_get_pairs(self.fresh_keys(300, "warm"))
        self.dynamo.conditional_puts(self.fresh_keys(300, "warm"))
        n = 48
        self.block([us_number(AREA_WARMUP, i) for i in range(0, n, 4)])
        jobs = self.single_jobs(AREA_WARMUP, n, 4, "W")
        phase = hammer(jobs, CONCURRENCY, self.stack.client, self.deliver)
        self.fail("warm-up deliveries", phase.errors)
        self.forwarded += sum(j[1] for j in jobs)
        sends = [
            (BUSINESSES[i % 2], devstack.send_body(us_number(AREA_WARMUP, i), "hi"), 403 if i % 4 == 0 else 200)
            for i in range(n)
        ]
        phase = hammer(sends, CONCURRENCY, self.stack.client, self.send)
        self.fail("warm-up sends", phase.errors)
        self.import_numbers([us_number(AREA_IMPORT_WARMUP, i) for i in range(200)])
        log(f"warmed up in {time.monotonic() - t0:.1f}s")

    def concurrent_figure(self, name, kind, jobs, run_job, before, target=None):
        """`jobs` at concurrency 16 between two put+get baselines: rate and
        p50/p99 latency, each as a ratio. Returns the baseline after, the
        next figure's baseline before."""
        cpu = self.cpu.snapshot()
        phase = hammer(jobs, CONCURRENCY, self.stack.client, run_job)
        used = self.cpu.used(cpu)
        self.fail(name, phase.errors)
        after = self.raw_put_get()
        raw_rate = (before.rate + after.rate) / 2
        raw_latencies = before.latencies + after.latencies
        self.show_baseline("raw put+get pairs (c16)", (before, after), f"{raw_rate:8.1f}/s", f"{before.rate:.1f}/s before, {after.rate:.1f}/s after")
        ratio = phase.rate / raw_rate
        self.rates[name] = phase.rate
        met = None if target is None else ratio >= target
        self.show(f"{name} (c16)", f"{phase.rate:8.1f}/s", f"{ratio:.2f}x raw put+get", target and f">= {target}x", met)
        for p in (50, 99):
            ours, base = percentile(phase.latencies, p), percentile(raw_latencies, p)
            self.show(f"  {kind} latency p{p}", f"{ours * 1000:8.1f} ms", f"{ours / base:.2f}x raw pair ({base * 1000:.1f} ms)")
        self.show_cpu(wall=used[0], used=used[1])
        return after

    def prepare_singles(self):
        """Blocks a share of the senders; the single deliveries and the
        sends to the same people."""
        n = self.args.deliveries
        self.block([us_number(AREA_SINGLE, i) for i in range(0, n, SINGLE_BLOCKED_EVERY)])
        return self.single_jobs(AREA_SINGLE, n, SINGLE_BLOCKED_EVERY, "S"), self.send_jobs(AREA_SINGLE, self.args.sends, SINGLE_BLOCKED_EVERY)

    def prepare_large(self):
        """Every run its own senders and ids, a share of them blocked."""
        plans = []
        for r in range(self.args.large_runs):
            numbers = [us_number(AREA_LARGE, r * LARGE_DELIVERY + i) for i in range(LARGE_DELIVERY)]
            self.block(numbers[::LARGE_BLOCKED_EVERY])
            # Ten changes of 100 messages, alternating between the two
            # business numbers, over two entries: Meta's batching shape.
            messages = [
                (BUSINESSES[(i // 100) % 2], numbers[i], f"wamid.BENCH.{self.run_id}.L{r}.{i:04d}", f"message {i} of a flood")
                for i in range(LARGE_DELIVERY)
            ]
            blocked = len(numbers[::LARGE_BLOCKED_EVERY])
            plans.append((delivery_body(messages, changes_per_entry=5), LARGE_DELIVERY - blocked, blocked))
        return plans

    def singles(self, jobs, before):
        blocked = sum(j[2] for j in jobs)
        log(f"single deliveries: {len(jobs)} at concurrency {CONCURRENCY}, {blocked} from blocked senders")
        self.forwarded += sum(j[1] for j in jobs)
        floor = self.raw_delivery_calls()
        writes = self.raw_writes()
        after = self.concurrent_figure("single deliveries", "delivery", jobs, self.deliver, before, TARGET_SINGLE_RATIO)
        # The floor between the same two baselines as the figure.
        raw_rate = (before.rate + after.rate) / 2
        delivered = self.rates["single deliveries"]
        self.show(
            "  its DynamoDB calls alone (c16)",
            f"{floor.rate:8.1f}/s",
            f"{floor.rate / raw_rate:.2f}x raw put+get: the most a forwarded message can reach; "
            f"deliveries reach {delivered / floor.rate:.0%} of it",
        )
        self.show_cpu(*floor.cpu)
        # DynamoDB Local on disk commits one item write at a time (SQLite
        # has one writer), so a pair costs about one write and a forwarded
        # message, with its claim, completion and chat stamp, three.
        self.show(
            "  raw writes alone (c16)",
            f"{writes.rate:8.1f}/s",
            f"{writes.rate / raw_rate:.2f}x raw put+get; a third of it, the ceiling of "
            f"3 writes per message: {writes.rate / 3 / raw_rate:.2f}x",
        )
        self.show_cpu(*writes.cpu)
        return after

    def sends(self, jobs, before):
        refused = sum(1 for j in jobs if j[2] == 403)
        log(f"sends through the proxy: {len(jobs)} at concurrency {CONCURRENCY}, {refused} to blocked people (403)")
        return self.concurrent_figure("sends via proxy", "send", jobs, self.send, before)

    def large(self, plans, before):
        runs = len(plans)
        log(
            f"{LARGE_DELIVERY}-message deliveries: {runs} run(s) between runs of {RAW_CONDITIONAL_PUTS} raw conditional "
            f"puts at concurrency {INGRESS_CONCURRENCY}; 1 sender in {LARGE_BLOCKED_EVERY} blocked"
        )
        times, raws, ratios, failed = [], [], [], 0
        cpu_wall, cpu_used = 0.0, {}
        raw_phases = [before]
        for r, job in enumerate(plans):
            cpu = self.cpu.snapshot()
            phase = hammer([job], 1, self.stack.client, self.deliver)
            wall, used = self.cpu.used(cpu)
            cpu_wall += wall
            for name, seconds in used.items():
                cpu_used[name] = cpu_used.get(name, 0.0) + seconds
            self.fail(f"{LARGE_DELIVERY}-message delivery", phase.errors)
            failed += bool(phase.errors)
            self.forwarded += job[1]
            # Paired: each delivery against the raw puts just before and
            # just after it (the after of one run is the before of the next).
            after = self.raw_conditional_puts()
            raw_phases.append(after)
            raw = (before.wall + after.wall) / 2
            times.append(phase.wall)
            raws.append(raw)
            ratios.append(phase.wall / raw)
            log(
                f"  run {r + 1}: {phase.wall:.2f}s to answer; raw {RAW_CONDITIONAL_PUTS} conditional puts "
                f"{before.wall:.2f}s before, {after.wall:.2f}s after; {ratios[-1]:.2f}x"
            )
            before = after
        raw = statistics.median(raws)
        self.show_baseline(
            f"raw {RAW_CONDITIONAL_PUTS} cond. puts (c32)",
            raw_phases,
            f"{raw:8.2f} s",
            f"{RAW_CONDITIONAL_PUTS / raw:.0f} puts/s; runs {', '.join(f'{p.wall:.2f}' for p in raw_phases)} s",
        )
        ratio = statistics.median(ratios)
        self.show(
            f"{LARGE_DELIVERY}-message delivery",
            f"{statistics.median(times):8.2f} s",
            f"{ratio:.2f}x raw cond. puts",
            f"<= {TARGET_LARGE_RATIO}x",
            ratio <= TARGET_LARGE_RATIO,
        )
        if runs > 1:
            print(f"  {'':<28}{'':>12}   median of {runs} paired runs: {', '.join(f'{t:.2f} s' for t in times)}")
        if failed:
            print(f"  {'':<28}{'':>12}   {failed} of {runs} not answered 2xx: their time is that of the failure")
        self.show_cpu(wall=cpu_wall, used=cpu_used)
        return before

    def import_numbers(self, numbers):
        """POST /v1/blocks:batch of IMPORT_BATCH numbers, IMPORT_IN_FLIGHT at
        once; every number must come back `blocked`."""

        def post(conn, chunk):
            body = json.dumps({"action": "block", "numbers": chunk, "reason": "bench: imported", "scope": "all"}).encode()
            status, data = conn.request("POST", "/v1/blocks:batch", body, self.auth)
            if status != 200:
                return f"POST /v1/blocks:batch: {status} {data[:200]!r}"
            results = json.loads(data).get("results") or []
            wrong = [r for r in results if r.get("status") != "blocked"]
            if len(results) != len(chunk) or wrong:
                return f"POST /v1/blocks:batch: {len(wrong)} of {len(chunk)} not blocked, e.g. {wrong[:1]}"
            return None

        chunks = [numbers[i : i + IMPORT_BATCH] for i in range(0, len(numbers), IMPORT_BATCH)]
        phase = hammer(chunks, IMPORT_IN_FLIGHT, self.stack.client, post)
        self.fail("import", phase.errors)
        return phase

    def imports(self, before):
        """The import in segments with a raw baseline between each two: it
        lasts long enough for the machine's load to change several times,
        and the ratio is against the mean of all of them. Each segment
        holds several rounds of requests in flight, so the pauses cost
        little of the import's own concurrency."""
        n = self.args.import_count
        numbers = [us_number(AREA_IMPORT, k) for k in range(n)]
        per_segment = IMPORT_BATCH * IMPORT_IN_FLIGHT * 4
        segments = [numbers[i : i + per_segment] for i in range(0, n, per_segment)]
        if len(segments) > IMPORT_SEGMENTS:
            size = math.ceil(len(segments) / IMPORT_SEGMENTS) * per_segment
            segments = [numbers[i : i + size] for i in range(0, n, size)]
        between = f" in {len(segments)} segments, {RAW_CONDITIONAL_PUTS} raw conditional puts after each" if len(segments) > 1 else ""
        log(f"import: {n:,} numbers, {IMPORT_BATCH} per request, {IMPORT_IN_FLIGHT} requests at once{between}")
        raws = [before]
        wall, cpu_wall, cpu_used, done = 0.0, 0.0, {}, 0
        for segment in segments:
            cpu = self.cpu.snapshot()
            phase = self.import_numbers(segment)
            seconds, used = self.cpu.used(cpu)
            cpu_wall += seconds
            for name, value in used.items():
                cpu_used[name] = cpu_used.get(name, 0.0) + value
            wall += phase.wall
            done += len(segment)
            raws.append(self.raw_conditional_puts())
            log(f"  imported {done:,} numbers in {wall:.0f}s of import ({len(segment) / phase.wall:.0f}/s; raw {raws[-1].rate:.0f} puts/s after)")
        raw_rate = statistics.mean(r.rate for r in raws)
        self.show_baseline(
            f"raw {RAW_CONDITIONAL_PUTS} cond. puts (c32)",
            raws,
            f"{RAW_CONDITIONAL_PUTS / raw_rate:8.2f} s",
            f"{raw_rate:.0f} puts/s; {min(r.rate for r in raws):.0f} to {max(r.rate for r in raws):.0f} over {len(raws)} runs",
        )
        rate = n / wall
        self.show(f"import {n:,} numbers", f"{wall:8.1f} s", f"{rate:.0f} numbers/s, {rate / raw_rate:.2f}x raw cond. puts")
        self.show_cpu(wall=cpu_wall, used=cpu_used)

    def check_fakes(self):
        counts = self.fakes.counts()
        problems = []
        if counts.get("crm_messages", 0) != self.forwarded:
            problems.append(f"the CRM got {counts.get('crm_messages', 0)} messages, {self.forwarded} were to be forwarded")
        for key in ("crm_bad_signature", "graph_bad_token", "unexpected"):
            if counts.get(key):
                problems.append(f"{key}: {counts[key]}")
        for problem in problems:
            self.fail("fakes", [problem])
        return counts

    def run(self):
        self.warm_up()
        singles, sends = self.prepare_singles()
        plans = self.prepare_large()
        print(f"\nload figures (run {self.run_id}; each ratio against DynamoDB Local measured just before and just after it)")
        # Each figure between two baselines; the one after a figure is the
        # one before the next.
        pairs = self.singles(singles, self.raw_put_get())
        self.sends(sends, pairs)
        puts = self.large(plans, self.raw_conditional_puts())
        if self.args.import_count:
            self.imports(puts)
        counts = self.check_fakes()
        log(f"CRM fake: {counts.get('crm_requests', 0)} requests, {counts.get('crm_messages', 0)} messages; Graph fake: {counts.get('graph_sends', 0)} sends")

    def summary(self):
        print("\nsummary")
        for name, figure, ratio, target, met in self.figures:
            verdict = "" if met is None else ("  met" if met else "  MISSED")
            print(f"  {name.strip():<28}{figure.strip():>12}   {ratio:<38}{target}{verdict}")
        if self.failures:
            print("\nrequests not answered as they should (exit status 1):")
            for what, (count, first) in self.failures.items():
                print(f"  {what}: {count} failed, e.g. {first}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run: 100 deliveries and sends, 1 large delivery, 5,000 imports")
    parser.add_argument("--deliveries", type=int, help="single-message deliveries (default 400)")
    parser.add_argument("--sends", type=int, help="sends through the proxy (default 400)")
    parser.add_argument("--large-runs", type=int, help=f"{LARGE_DELIVERY}-message deliveries, median reported (default 3)")
    parser.add_argument("--import", dest="import_count", type=int, help="numbers to import, 0 to skip (default 100000)")
    parser.add_argument(
        "--profile",
        choices=("stack", "dev"),
        default="stack",
        help="cargo profile of the stack: stack (optimised like the Lambda build, the default) or dev (debug)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (stack log and DynamoDB data)")
    parser.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fakes:
        serve_fakes()
        return 0
    defaults = (100, 100, 1, 5000) if args.quick else (400, 400, 3, 100_000)
    for name, default in zip(("deliveries", "sends", "large_runs", "import_count"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.deliveries < 1 or args.sends < 1 or args.large_runs < 1 or args.import_count < 0:
        parser.error("counts must be positive (--import may be 0)")
    if args.deliveries > 100_000 or args.import_count > NUMBERS_PER_AREA or args.large_runs * LARGE_DELIVERY > NUMBERS_PER_AREA:
        parser.error("counts too large for the number ranges used")

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    work = Path(tempfile.mkdtemp(prefix="wa-bench-load-"))
    fakes = stack = dynamo = bench = None
    status = 2
    try:
        fakes = Fakes()
        stack = devstack.Stack(
            work, f"{fakes.base}/crm/webhook", f"{fakes.base}/graph", env={"DEV_PROFILE": args.profile}
        )
        log(f"starting scripts/dev on {stack.base} (DynamoDB Local on {stack.ddb_port}, data in {work}); the first start builds it")
        t0 = time.monotonic()
        stack.start(timeout=1800)
        log(f"stack up in {time.monotonic() - t0:.0f}s")
        dynamo = Dynamo(stack.ddb_port)
        dynamo.create_table()
        bench = Bench(args, stack, fakes, dynamo)
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; stack: scripts/dev "
            f"({args.profile} profile), DynamoDB Local on disk; scratch table {dynamo.table}"
        )
        t0 = time.monotonic()
        bench.run()
        log(f"measured in {time.monotonic() - t0:.0f}s")
        bench.summary()
        status = 1 if bench.failures else 0
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    except StackError as error:
        log(f"the run could not complete: {error}")
    finally:
        # Each step on its own: a failure in one must not leave the others
        # running.
        if dynamo is not None:
            try:
                dynamo.delete_table()
            except StackError as error:
                log(f"could not delete the scratch table: {error}")
        if stack is not None:
            stack.stop()
        if fakes is not None:
            fakes.stop()
        # DynamoDB Local's data of a full run is hundreds of MB: only the
        # stack's log is kept from a failed run, unless --keep.
        if args.keep:
            log(f"kept {work} (scripts/dev log: {work / 'dev.log'})")
        elif status == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "data", ignore_errors=True)
            log(f"scripts/dev log kept: {work / 'dev.log'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
