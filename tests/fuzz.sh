#!/usr/bin/env bash
# Schema fuzzing of the local stack: schemathesis generates requests for
# every operation of openapi.yaml (valid and invalid data, and sequences that
# follow the document's links) against a stack of its own (scripts/dev on a
# free port, data in a temporary directory), and checks every answer against
# the document: no 5xx, documented status codes, content types and bodies,
# invalid data refused, auth enforced, signed webhooks only, scopes as the
# document's security requirements say. Run by scripts/test; bounded to about
# three minutes on two cores. Stops what it started, also on failure.
#
#   tests/fuzz.sh                       # seed, examples and budget below
#   FUZZ_SEED=7 FUZZ_MAX_TIME=300 tests/fuzz.sh  # another seed, a longer run
#   FUZZ_REPORT_DIR=/tmp/fuzz tests/fuzz.sh      # keep outputs and statistics
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/scripts/lib.sh"
cd "$ROOT"

FUZZ_SEED=${FUZZ_SEED:-1106}           # Hypothesis seed: the same cases first, then what time allows
FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-30}     # cases per operation and phase
FUZZ_MAX_TIME=${FUZZ_MAX_TIME:-100}    # seconds for the main pass
FUZZ_SCOPE_EXAMPLES=${FUZZ_SCOPE_EXAMPLES:-24}
FUZZ_SCOPE_MAX_TIME=${FUZZ_SCOPE_MAX_TIME:-25}

ensure_java
ensure_dynamodb_local
ensure_python_tools

started=$SECONDS
WORK=$(mktemp -d)
STACK_PID=
cleanup() {
  stop_dev_stack
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(free_port)
base="http://127.0.0.1:$port"
log "fuzz: starting the local stack on $base"
start_dev_stack "$port" "$WORK/data" "$WORK/stack.log"

# Tokens as the stack accepts them (LOCAL_JWT_SECRET, default
# local-jwt-secret): all scopes for the main pass; for the scopes pass one per
# scope, two combinations, an expired one and one signed with another secret.
wa_cli="${CARGO_TARGET_DIR:-$ROOT/target}/debug/wa-cli"
token() { "$wa_cli" token --sub fuzz "$@"; }
all_scopes=$(token --scope all)
tokens=()
add_token() { # add_token NAME VALID TOKEN-ARGS...: one entry of FUZZ_TOKENS
  local name=$1 valid=$2; shift 2
  local scopes=() args=("$@") i
  for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[i]}" = --scope ] && scopes+=("${args[i + 1]}")
  done
  tokens+=("$name" "$valid" "${scopes[*]}" "$(token "$@")")
}
add_token read true --scope blocklist:read
add_token write true --scope blocklist:write
add_token admin true --scope blocklist:admin
add_token delegate true --scope blocklist:delegate
add_token send true --scope messages:send
add_token write+delegate true --scope blocklist:write --scope blocklist:delegate
add_token send+delegate true --scope messages:send --scope blocklist:delegate
add_token expired false --scope all --ttl -60
add_token other-secret false --scope all --secret not-the-local-secret
FUZZ_TOKENS=$(python3 -c '
import json, sys
a = sys.argv[1:]
print(json.dumps([{"name": a[i], "valid": a[i + 1] == "true", "scopes": a[i + 2].split(), "token": a[i + 3]}
                  for i in range(0, len(a), 4)]))' "${tokens[@]}")

# Some state for the realistic values of hooks.py to meet from the first
# request on: blocks in both kinds of scope, a BSUID block and a link, chats
# of both business numbers, a contact. Every change also lands in the audit
# feed, so that short pages of each listing hand out cursors at once.
seed() { # seed: the requests, through wa-cli as a user makes them
  local wa=("$wa_cli" --base-url "$base" --token "$all_scopes") n
  "${wa[@]}" block +16505551234 --reason "seed: abusive messages"
  "${wa[@]}" block +5511987654321 --reason "seed: spam" --scope 106540352242922
  "${wa[@]}" inbound --from +16505550123 --user-id US.13491208655302741918 --text "seed"
  "${wa[@]}" block US.13491208655302741918 --reason "seed: harassment"
  for n in +447700900123 +4915112345678 +919876543210 +84912345678; do
    "${wa[@]}" inbound --from "$n" --text "seed"
    "${wa[@]}" inbound --from "$n" --phone-number-id 106540352242923 --text "seed"
  done
  "${wa[@]}" inbound --from +16505551234 --text "seed: suppressed"
  curl -sf -o /dev/null -X PUT "$base/v1/contacts/%2B447700900123" \
    -H "Authorization: Bearer $all_scopes" -H 'content-type: application/json' \
    -d '{"name":"Ana Souza","email":"ana@example.com","category":"vip","groups":["retail"]}'
}
seed >"$WORK/seed.log" 2>&1 || { cat "$WORK/seed.log" >&2; exit 1; }

export SCHEMATHESIS_HOOKS="$ROOT/tests/fuzz/hooks.py"
export FUZZ_TOKENS
# The stack's secrets, as scripts/dev defaults them (every variable overrides).
export FUZZ_APP_SECRET=${WHATSAPP_APP_SECRET:-local-app-secret}
export FUZZ_VERIFY_TOKEN=${WHATSAPP_VERIFY_TOKEN:-local-verify-token}
schemathesis_run() { # schemathesis_run PASS ARGS...: one pass; its output in $WORK/PASS.out
  local pass=$1; shift
  local status=0
  # From $WORK: schemathesis keeps its caches (crash files) in ./.schemathesis.
  (cd "$WORK" && FUZZ_PASS=$pass FUZZ_STATS="$WORK/$pass.json" \
    schemathesis --config-file "$ROOT/tests/fuzz/schemathesis.toml" run "$ROOT/openapi.yaml" \
    --url "$base" --seed "$FUZZ_SEED" --no-color --generation-database none "$@") \
    >"$WORK/$pass.out" 2>&1 || status=$?
  cat "$WORK/$pass.out"
  return "$status"
}

exits=()
log "fuzz: every operation with all scopes (examples, coverage, fuzzing, stateful)"
status=0
schemathesis_run main -H "Authorization: Bearer $all_scopes" \
  --max-examples "$FUZZ_EXAMPLES" --max-time "$FUZZ_MAX_TIME" || status=$?
exits+=("main=$status")

log "fuzz: scopes, each /v1/ operation with $((${#tokens[@]} / 4)) tokens in turn"
status=0
schemathesis_run scopes --phases fuzzing --mode positive --no-shrink \
  --exclude-path-regex '^/webhook$' --exclude-checks ignored_auth \
  --generation-with-security-parameters false \
  --max-examples "$FUZZ_SCOPE_EXAMPLES" --max-time "$FUZZ_SCOPE_MAX_TIME" || status=$?
exits+=("scopes=$status")

stop_dev_stack
if [ -n "${FUZZ_REPORT_DIR:-}" ]; then
  mkdir -p "$FUZZ_REPORT_DIR"
  cp "$WORK"/main.* "$WORK"/scopes.* "$WORK/stack.log" "$FUZZ_REPORT_DIR"/ 2>/dev/null || true
  # `schemathesis replay <id>` run from there replays a reported failure.
  cp -r "$WORK/.schemathesis" "$FUZZ_REPORT_DIR"/ 2>/dev/null || true
fi

# The summary: operations of the document that were called, requests sent
# (every case and probe), and what schemathesis reported.
python3 - "$ROOT/openapi.yaml" "$WORK" "$((SECONDS - started))" "${exits[*]}" <<'PY'
import json, os, re, sys

spec, work, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
exits = dict(pair.split("=") for pair in sys.argv[4].split())
documented = set()
path = None
for line in open(spec):
    m = re.match(r"^  (/\S*):\s*$", line)
    if m:
        path = m.group(1)
    m = re.match(r"^    (get|put|post|delete|patch):\s*$", line)
    if m and path:
        documented.add(f"{m.group(1).upper()} {path}")
requests, failures, errors = 0, 0, 0
statuses = {}
for name in ("main", "scopes"):
    try:
        stats = json.load(open(os.path.join(work, f"{name}.json")))
    except (OSError, ValueError):
        stats = {}
    for label, counts in stats.items():
        requests += counts.get("requests", 0)
        if label in documented:
            mine = statuses.setdefault(label, {})
            for code, n in counts.items():
                if code.isdigit():
                    mine[code] = mine.get(code, 0) + n
    try:
        last = open(os.path.join(work, f"{name}.out")).read().strip().splitlines()[-1]
    except (OSError, IndexError):
        last = ""
    counted = False
    for word in ("failure", "error"):
        m = re.search(rf"(\d+) {word}s?\b", last)
        if m:
            counted = True
            if word == "failure":
                failures += int(m.group(1))
            else:
                errors += int(m.group(1))
    if not counted and int(exits.get(name, "1")) != 0:
        errors += 1  # the pass ended without reporting what went wrong
# Where the cases went: statuses per operation, both passes together.
for label in sorted(documented, key=lambda l: (l.split()[1], l)):
    codes = statuses.get(label, {})
    spread = " ".join(f"{code}x{n}" for code, n in sorted(codes.items()))
    print(f"  {label:<46} {sum(codes.values()):>5}  {spread or 'never called'}")
called = [label for label in documented if statuses.get(label)]
status = f"{failures} failures" + (f", {errors} errors" if errors else "")
print(f"fuzz: {len(called)} of {len(documented)} operations, {requests} cases, {status} in {seconds}s")
failed = any(code != "0" for code in exits.values())
sys.exit(1 if failed or failures or errors or len(called) < len(documented) else 0)
PY
