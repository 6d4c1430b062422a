#!/usr/bin/env bash
# The local stack as a user runs it (SPEC section 6): the README walkthrough
# verbatim against `scripts/dev`, a restart that keeps data, and two stacks
# side by side that do not interfere. Run by scripts/test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/scripts/lib.sh"
cd "$ROOT"

# Built once here, with no time limit: on a cold target the first build of
# the stack (its own feature set, apart from the test build's) takes minutes,
# and the start-up waits below are for the stack, not the compiler.
log "building the local stack (dev profile)"
cargo build --quiet --locked -p wa-dev

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
failed=0
check() { # check NAME COMMAND...: one named assertion
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}

# The stacks' expiry sweep runs every second rather than every minute.
export DEV_SWEEP_SECONDS=1
# start_stack NAME PORT: scripts/dev on PORT with data in $WORK/NAME.
start_stack() {
  local name=$1 port=$2
  # Appended: a restarted stack keeps the log of its first run (B52 scan).
  LOCAL_API_ADDR="127.0.0.1:$port" DEV_DATA_DIR="$WORK/$name" scripts/dev >>"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
    sleep 0.5
  done
  echo "stack $name did not start:" >&2; cat "$WORK/$name.log" >&2; return 1
}

stop_last_stack() {
  local pid=${PIDS[-1]}
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  unset 'PIDS[-1]'
}

# The walkthrough: the shell block of README.md between the markers.
awk '/<!-- walkthrough:start -->/{on=1; next} /<!-- walkthrough:end -->/{on=0} on' README.md \
  | sed -e '/^```/d' >"$WORK/walkthrough.sh"
[ -s "$WORK/walkthrough.sh" ] || { echo "README.md has no walkthrough" >&2; exit 1; }

port_a=$(free_port)
start_stack a "$port_a"
out="$WORK/walkthrough.out"
if (cd "$ROOT" && WA_BASE_URL="http://127.0.0.1:$port_a" bash -euo pipefail "$WORK/walkthrough.sh") >"$out" 2>&1; then
  check "walkthrough runs verbatim" true
else
  check "walkthrough runs verbatim" false; cat "$out"
fi
check "walkthrough: inbound from the blocked number is suppressed" grep -q '"suppressed": *1' "$out"
check "walkthrough: the send is refused" grep -q 'recipient_blocked' "$out"
check "walkthrough: history shows the block and the suppression" \
  bash -c "grep -q '\"action\": *\"blocked\"' '$out' && grep -q '\"action\": *\"inbound_suppressed\"' '$out'"
check "walkthrough: the BSUID-only message and the range's are suppressed too" \
  test "$(grep -c '"suppressed": *1' "$out")" -eq 3
check "walkthrough: the BSUID shows the linked number's block" grep -q '"linked_blocks": \[$' "$out"
check "walkthrough: STOP opts the customer out" grep -q '"all": *"opted_out"' "$out"
check "walkthrough: the send to them is refused" grep -q 'recipient_opted_out' "$out"
check "walkthrough: the prefix rule refuses the send" grep -q '"rule": *"wave-234"' "$out"

export PATH="${CARGO_TARGET_DIR:-$ROOT/target}/debug:$PATH"
token=$(wa-cli token --scope all)
# blocks_of PORT SUBJECT: GET /v1/blocks/SUBJECT on that stack (SUBJECT as
# in a URL, e.g. %2B16505551234); prints the active blocks, one JSON line
# each. Fails, saying why, unless the answer is a 200 with the subject view
# of that very subject: a 401, a 404 or a dead stack is no answer.
blocks_of() {
  local out status body
  out=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$1/v1/blocks/$2" \
    -H "Authorization: Bearer $token") || { echo "GET /v1/blocks/$2 on :$1: no answer" >&2; return 1; }
  status=${out##*$'\n'}; body=${out%$'\n'*}
  [ "$status" = 200 ] || { echo "GET /v1/blocks/$2 on :$1 answered $status: $body" >&2; return 1; }
  python3 - "$body" "$2" <<'PY'
import json, sys, urllib.parse
body, subject = sys.argv[1], urllib.parse.unquote(sys.argv[2])
try:
    view = json.loads(body)
    assert isinstance(view, dict), "not an object"
    for key in ("blocks", "linked_blocks", "links", "chats"):
        assert isinstance(view.get(key), list), f"{key} is not a list"
    assert "contact" in view and "number" in view, "no contact or number"
    assert view.get("subject") == subject, f"subject {view.get('subject')!r}, not {subject!r}"
    for block in view["blocks"]:
        assert block.get("subject") == subject, f"a block of {block.get('subject')!r}"
        assert isinstance(block.get("scope"), str) and isinstance(block.get("source"), str), block
except (ValueError, AssertionError) as e:
    sys.exit(f"not a subject view of {subject} ({e}): {body}")
for block in view["blocks"]:
    print(json.dumps(block))
PY
}
blocked_in() { # blocked_in PORT SUBJECT: the subject has a block on that stack
  local blocks; blocks=$(blocks_of "$@") && [ -n "$blocks" ]
}
not_blocked_in() { # not_blocked_in PORT SUBJECT: the stack answers, with no block
  local blocks; blocks=$(blocks_of "$@") && [ -z "$blocks" ]
}
# auto_blocked_in PORT SUBJECT CODE: the stack shows an automatic block of
# the subject by wa-blocked for error CODE, within a deadline (the failure
# webhook and the stream poller run after the send that caused them).
auto_blocked_in() {
  local deadline=$((SECONDS + 30)) blocks=""
  while :; do
    if blocks=$(blocks_of "$1" "$2") && printf '%s\n' "$blocks" | python3 -c '
import json, sys
code = sys.argv[1]
sys.exit(not any(b.get("source") == "auto" and b.get("reason_code") == code and b.get("actor") == "wa-blocked"
                 for b in map(json.loads, filter(None, sys.stdin.read().splitlines()))))' "$3"; then
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.2
  done
  echo "no automatic block of $2 for $3 on :$1 within 30 s; blocks: ${blocks:-none}" >&2
  return 1
}

check "walkthrough: 131026 auto-blocks" auto_blocked_in "$port_a" "%2B447700900123" 131026
check "walkthrough: the blocked number shows its block" blocked_in "$port_a" "%2B16505551234"
check "walkthrough: a number never blocked shows none" not_blocked_in "$port_a" "%2B16505550000"

stop_last_stack
start_stack a "$port_a"
check "restart keeps data" blocked_in "$port_a" "%2B16505551234"

port_b=$(free_port)
start_stack b "$port_b"
check "a second stack starts empty" not_blocked_in "$port_b" "%2B16505551234"
WA_BASE_URL="http://127.0.0.1:$port_b" WA_TOKEN=$token wa-cli block +447700900999 --reason "only on b" >/dev/null
check "a block on one stack stays there" blocked_in "$port_b" "%2B447700900999"
check "the other stack does not see it" not_blocked_in "$port_a" "%2B447700900999"

# B13: the stack's own sweep (every second here, DEV_SWEEP_SECONDS) removes
# a temporary block after its end, with an `expired` event.
expired_in() { # expired_in PORT SUBJECT: an expired event within 30 s
  local deadline=$((SECONDS + 30)) history=""
  while :; do
    history=$(curl -s "http://127.0.0.1:$1/v1/numbers/$2/history" -H "Authorization: Bearer $token") &&
      printf '%s' "$history" | python3 -c '
import json, sys
sys.exit(not any(e.get("action") == "expired" and e.get("actor") == "expiry"
                 for e in json.load(sys.stdin).get("items", [])))' && return 0
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.5
  done
  echo "no expired event of $2 on :$1 within 30 s; history: ${history:-none}" >&2
  return 1
}
ends=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%SZ)
curl -s -o /dev/null -X PUT "http://127.0.0.1:$port_b/v1/blocks/%2B447700900888" \
  -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d "{\"reason\":\"cool off\",\"expires_at\":\"$ends\"}"
check "a temporary block is swept after its end" expired_in "$port_b" "%2B447700900888"
check "the swept block is gone" not_blocked_in "$port_b" "%2B447700900888"

# B15: with platform_block on, a block of someone who just wrote reaches
# Meta's Block Users API (the stack's Graph sandbox) through the Audit
# stream, and an unblock takes it back.
line=106540352242922
meta_holds() { # meta_holds PORT DIGITS WANT(yes|no): the sandbox's list, within 30 s
  local deadline=$((SECONDS + 30)) list=""
  while :; do
    list=$(curl -s "http://127.0.0.1:$1/sandbox/graph/v25.0/$line/block_users" \
      -H "Authorization: Bearer local-access-token") &&
      printf '%s' "$list" | python3 -c '
import json, sys
held = any(u.get("wa_id") == sys.argv[1] for u in json.load(sys.stdin).get("data", []))
sys.exit(held != (sys.argv[2] == "yes"))' "$2" "$3" && return 0
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.5
  done
  echo "Meta's block list of $line on :$1 (want $3 for $2): ${list:-none}" >&2
  return 1
}
curl -s -o /dev/null -X PUT "http://127.0.0.1:$port_b/v1/settings/$line" \
  -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"platform_block":true}'
WA_BASE_URL="http://127.0.0.1:$port_b" wa-cli inbound --from +447700900777 --text hi >/dev/null
WA_BASE_URL="http://127.0.0.1:$port_b" WA_TOKEN=$token wa-cli block +447700900777 --reason spam >/dev/null
check "platform block: the person is blocked at Meta" meta_holds "$port_b" 447700900777 yes
WA_BASE_URL="http://127.0.0.1:$port_b" WA_TOKEN=$token wa-cli unblock +447700900777 --reason sorted >/dev/null
check "platform block: the unblock removes it at Meta" meta_holds "$port_b" 447700900777 no

# B52 and the metrics: what the stacks wrote. JSON lines only: the welcome
# banner prints example numbers and tokens on purpose.
logs="$WORK/json-lines"
grep -h '^{' "$WORK"/*.log >"$logs" || true
check "logs: the stacks wrote JSON lines" test -s "$logs"
check "logs: every request line carries a request id" \
  bash -c '! grep "\"message\":\"request\"" "$1" | grep -qv "\"requestId\""' _ "$logs"
for secret in local-app-secret local-verify-token local-access-token local-jwt-secret; do
  check "logs: no $secret" bash -c '! grep -qF -- "$1" "$2"' _ "$secret" "$logs"
done
check "logs: no bearer token" bash -c '! grep -qE "eyJ[A-Za-z0-9_-]*\.eyJ" "$1"' _ "$logs"

# unmasked FILE NUMBER NSN: FILE holds the customer NUMBER (digits, with its
# national significant number NSN) in some form: its national digits with
# or without separators ("16505551234", "%2B16505551234", "+1 650-555-1234",
# "(650) 555-1234", "07700 900123"), or in base64 (a wamid embeds it so).
unmasked() {
  local file=$1 number=$2 nsn=$3 pattern i k encoded start end
  pattern=${nsn:0:1}
  for ((i = 1; i < ${#nsn}; i++)); do pattern+="[ ().-]{0,2}${nsn:i:1}"; done
  grep -qE -- "$pattern" "$file" && return 0
  for k in 0 1 2; do # each alignment; only the characters fully inside it
    encoded=$(printf "%${k}s%s" "" "$number" | base64 -w0)
    start=$(((8 * k + 5) / 6)); end=$((8 * (k + ${#number}) / 6))
    grep -qF -- "${encoded:start:end-start}" "$file" && return 0
  done
  return 1
}
masked_only() { ! unmasked "$@"; }
check "logs: +16505551234 only masked" masked_only "$logs" 16505551234 6505551234
check "logs: +447700900123 only masked" masked_only "$logs" 447700900123 7700900123
check "logs: the masked form is what is logged" grep -q '+\*\*\*\*\*\*\*1234' "$logs"
# The walkthrough's events, each counted by an EMF line.
for metric in blocked inbound_suppressed outbound_refused auto_blocked; do
  check "metrics: an EMF line counts $metric" \
    bash -c 'grep "\"CloudWatchMetrics\"" "$1" | grep -q "\"Name\":\"$2\""' _ "$logs" "$metric"
done

echo "stack: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
