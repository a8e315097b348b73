#!/usr/bin/env bash
# Dashboard check: the web dashboard at /ui, rendered by headless Chromium against a real
# 3-node cluster. Steps:
#
# 1. install Debian's chromium if `chromium` is missing (root + apt-get only);
# 2. build tinykv-server (debug) and start three nodes from configs/node1.toml, on free
#    ports and with data directories in a temporary directory (an extra config file
#    replaces the address book; --store-id and --data-dir pick the node);
# 3. wait until the cluster takes writes, write a few keys, split the first region twice
#    through the admin API (3 regions) and move the leaders of the new regions to stores
#    2 and 3 (best effort: only the map's colours depend on it), then wait until node 1
#    holds all three regions;
# 4. with some KV traffic running, let Chromium load http://node1/ui, run its script for
#    5 s of virtual time and dump the DOM: it must show every store of the address book
#    as up (data-store-id, data-store-up) and every region node 1 reports, in the map
#    and in the table (data-region-id), and the throughput rows (data-route); its console
#    must show no uncaught exception and nothing refused by the page's CSP;
# 5. take a 1280x900 screenshot the same way: it must be a PNG of that size, not tiny,
#    of many colours (a blank page has one), with the map's leader colours in it;
# 6. switch authentication on (the nodes run with a root token in
#    TINYKV__SECURITY__ROOT_TOKEN, which changes nothing while it is off), wait until the
#    admin API answers 401, and load the page again: it must show its token form
#    (#auth-panel[data-auth-state=needed], #token-form with a password input, neither
#    hidden), still without an uncaught exception or a CSP refusal.
#
# The DOMs, the screenshots and the nodes' logs are kept in target/ui-artifacts/ (or
# $UI_ARTIFACTS). The nodes are stopped on exit. Run by .ci/run; by hand:
# `bash .ci/ui.sh`. Environment: CARGO, UI_ARTIFACTS, CHROMIUM (the browser command).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO="${CARGO:-cargo}"
CHROMIUM="${CHROMIUM:-chromium}"
SERVER="$PWD/target/debug/tinykv-server"
OUT="${UI_ARTIFACTS:-$PWD/target/ui-artifacts}"
NODES=3
# The nodes' root token (step 6): at least 16 characters, not of the tkv_ form.
ROOT_TOKEN="ui-check-root-token-$$"

log() { echo "ui: $*" >&2; }

# ---------------------------------------------------------------- chromium
if ! command -v "$CHROMIUM" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "$CHROMIUM is missing: installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    log "$CHROMIUM is missing and cannot be installed here (needs root and apt-get)"
    exit 1
  fi
fi

# ---------------------------------------------------------------- cluster
log "building tinykv-server"
"$CARGO" build --bin tinykv-server

tmp=$(mktemp -d)
mkdir -p "$OUT"
rm -f "$OUT"/ui.html "$OUT"/ui.png "$OUT"/ui-auth.html "$OUT"/ui-auth.png "$OUT"/node*.log \
  "$OUT"/chromium.log
pids=()
traffic_pid=""
cleanup() {
  if [ -n "$traffic_pid" ]; then
    kill "$traffic_pid" 2>/dev/null || true
    wait "$traffic_pid" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for i in $(seq 1 "$NODES"); do
    cp "$tmp/node$i.log" "$OUT/" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  log "FAILED: $*"
  for i in $(seq 1 "$NODES"); do
    log "node $i log (last 20 lines):"
    tail -n 20 "$tmp/node$i.log" >&2 || true
  done
  if [ -s "$tmp/chromium.log" ]; then
    log "chromium log (last 20 lines):"
    tail -n 20 "$tmp/chromium.log" >&2
  fi
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
: >"$tmp/ports.toml"
declare -a http_ports
for i in $(seq 1 "$NODES"); do
  http_ports[i]=$(free_port)
  cat >>"$tmp/ports.toml" <<TOML
[[cluster.stores]]
id = $i
raft_addr = "127.0.0.1:$(free_port)"
http_addr = "127.0.0.1:${http_ports[i]}"

TOML
done
node_url() { echo "http://127.0.0.1:${http_ports[$1]}"; }
base=$(node_url 1)

for i in $(seq 1 "$NODES"); do
  # A later --config file overrides an earlier one: this replaces the address book.
  TINYKV__SECURITY__ROOT_TOKEN="$ROOT_TOKEN" \
    "$SERVER" --config configs/node1.toml --config "$tmp/ports.toml" \
    --store-id "$i" --data-dir "$tmp/node$i" >"$tmp/node$i.log" 2>&1 &
  pids+=($!)
done
log "started $NODES nodes; node 1 at $base"

ready=""
for _ in $(seq 1 120); do
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || fail "a node exited during start-up"
  done
  if curl -fsS -o /dev/null -m 5 -X PUT --data-binary ready "$base/v1/kv/ui-ready" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.5
done
[ -n "$ready" ] || fail "the cluster did not take a write within 60 s"

i=0
for key in apple banana cherry grape kiwi lemon mango orange pear plum quince zucchini; do
  node=$((i % NODES + 1))
  curl -fsS -o /dev/null -m 10 -X PUT --data-binary "value of $key" "$(node_url "$node")/v1/kv/$key" \
    || fail "PUT $key on node $node failed"
  i=$((i + 1))
done

# POST a JSON body to node 1's admin API, retrying while the cluster settles; prints the
# answer.
admin_post() {
  local path=$1 body=$2 answer
  for _ in $(seq 1 20); do
    if answer=$(curl -fsS -m 15 -X POST -H 'content-type: application/json' \
      --data "$body" "$base$path" 2>/dev/null); then
      echo "$answer"
      return 0
    fi
    sleep 0.5
  done
  return 1
}
# The id of the region holding `key` in node 1's view.
region_of() {
  curl -fsS -m 10 "$base/v1/admin/regions" | python3 -c '
import json, sys, urllib.parse
key = sys.argv[1].encode()
def raw(k): return urllib.parse.unquote_to_bytes(k)
for r in json.load(sys.stdin)["regions"]:
    if raw(r["start_key"]) <= key and (r["end_key"] == "" or key < raw(r["end_key"])):
        print(r["id"]); break
' "$1"
}
# The id of the peer of region `id` (in a split answer on stdin) on store `store`.
peer_on() {
  python3 -c '
import json, sys
region_id, store = int(sys.argv[1]), int(sys.argv[2])
for r in json.load(sys.stdin)["regions"]:
    if r["id"] == region_id:
        print(next(p["id"] for p in r["peers"] if p["store_id"] == store))
' "$1" "$2"
}

first=$(region_of a) || fail "no region holds key a"
split1=$(admin_post "/v1/admin/regions/$first/split" '{"key":"h"}') || fail "splitting region $first at h failed"
middle=$(echo "$split1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["regions"][1]["id"])')
split2=$(admin_post "/v1/admin/regions/$middle/split" '{"key":"p"}') || fail "splitting region $middle at p failed"
last=$(echo "$split2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["regions"][1]["id"])')
log "split region $first into $first [-inf, h), $middle [h, p) and $last [p, +inf)"

# Colour: leaders on stores 2 and 3 for the new regions (best effort).
for pair in "$middle:2" "$last:3"; do
  region=${pair%%:*}
  store=${pair##*:}
  peer=$(curl -fsS -m 10 "$base/v1/admin/regions" | peer_on "$region" "$store" || true)
  if [ -n "$peer" ] && admin_post "/v1/admin/regions/$region/transfer-leader" \
    "{\"peer_id\":$peer}" >/dev/null; then
    log "region $region is led by store $store"
  else
    log "could not move the leader of region $region to store $store (not checked)"
  fi
done

# Node 1 holds all three regions, each with a known leader.
regions_json=""
for _ in $(seq 1 40); do
  regions_json=$(curl -fsS -m 10 "$base/v1/admin/regions" || true)
  if echo "$regions_json" | python3 -c '
import json, sys
regions = json.load(sys.stdin)["regions"]
sys.exit(0 if len(regions) >= 3 and all(r["leader"] for r in regions) else 1)
' 2>/dev/null; then
    break
  fi
  regions_json=""
  sleep 0.25
done
[ -n "$regions_json" ] || fail "node 1 does not show 3 regions with leaders"
stores_json=$(curl -fsS -m 10 "$base/v1/admin/stores") || fail "GET /v1/admin/stores failed"

# Some traffic for the throughput section.
(
  n=0
  while true; do
    curl -fsS -o /dev/null -m 5 -X PUT --data-binary "$n" "$base/v1/kv/traffic-$((n % 20))" || true
    curl -fsS -o /dev/null -m 5 "$base/v1/kv/apple" || true
    n=$((n + 1))
  done
) >/dev/null 2>&1 &
traffic_pid=$!

# ---------------------------------------------------------------- browser
chrome() {
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --no-first-run --no-default-browser-check --hide-scrollbars \
    --user-data-dir="$tmp/chrome-profile" "$@" 2>>"$tmp/chromium.log"
}

log "rendering $base/ui (DOM)"
chrome --enable-logging=stderr --virtual-time-budget=5000 --dump-dom "$base/ui" >"$OUT/ui.html" \
  || fail "chromium --dump-dom failed"
# The page's console: no uncaught exception, nothing refused by its Content-Security-Policy.
if grep -E ':CONSOLE.*(Uncaught|Refused to)' "$tmp/chromium.log" >&2; then
  fail "the page logged errors"
fi
log "rendering $base/ui (screenshot)"
chrome --window-size=1280,900 --virtual-time-budget=5000 --screenshot="$OUT/ui.png" "$base/ui" \
  || fail "chromium --screenshot failed"
cp "$tmp/chromium.log" "$OUT/chromium.log" 2>/dev/null || true

# ---------------------------------------------------------------- checks
log "checking the DOM"
python3 - "$OUT/ui.html" "$stores_json" "$regions_json" <<'PY' || fail "the rendered DOM is not what the API says"
import json
import sys
from html.parser import HTMLParser

path, stores, regions = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])


class Marked(HTMLParser):
    """Collects (tag, attributes) of every element carrying a data-* marker."""

    def __init__(self):
        super().__init__()
        self.marked = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if any(name.startswith("data-") for name in attrs):
            self.marked.append((tag, attrs))


parser = Marked()
parser.feed(open(path, encoding="utf-8").read())
marked = parser.marked
problems = []

store_rows = {a["data-store-id"]: a for t, a in marked if t == "tr" and "data-store-id" in a}
for store in stores["stores"]:
    row = store_rows.get(str(store["id"]))
    if row is None:
        problems.append(f"store {store['id']} is not rendered")
    elif row.get("data-store-up") != "true":
        problems.append(f"store {store['id']} is rendered as down")
if len(stores["stores"]) != 3:
    problems.append(f"the address book has {len(stores['stores'])} stores, not 3")

api_ids = sorted(str(r["id"]) for r in regions["regions"])
segments = sorted(a["data-region-id"] for t, a in marked if t == "li" and "data-region-id" in a)
rows = sorted(a["data-region-id"] for t, a in marked if t == "tr" and "data-region-id" in a)
if segments != api_ids:
    problems.append(f"map segments {segments}, regions {api_ids}")
if rows != api_ids:
    problems.append(f"table rows {rows}, regions {api_ids}")
if len(segments) < 2:
    problems.append("the map shows fewer than 2 regions")
routes = {a["data-route"] for t, a in marked if "data-route" in a}
for route in ["kv_get", "kv_put", "admin"]:
    if route not in routes:
        problems.append(f"no throughput row for {route}")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"ui: DOM ok: stores {sorted(store_rows)} up, regions {api_ids} in the map and "
      f"the table, routes {sorted(routes)}", file=sys.stderr)
PY

log "checking the screenshot"
python3 - "$OUT/ui.png" <<'PY' || fail "the screenshot is not a rendered dashboard"
import os
import struct
import sys
import zlib
from collections import Counter

path = sys.argv[1]
size = os.path.getsize(path)
data = open(path, "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, header = 8, b"", None
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    chunk = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        header = struct.unpack(">IIBBBBB", chunk)
    elif kind == b"IDAT":
        idat += chunk
    pos += 12 + length
width, height, depth, colour_type, _, _, interlace = header
assert depth == 8 and colour_type in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
channels = 3 if colour_type == 2 else 4
stride = width * channels
raw = zlib.decompress(idat)

# Undo the scanline filters (PNG spec, section 9).
pixels = Counter()
previous = bytearray(stride)
for y in range(height):
    start = y * (stride + 1)
    kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
    for x in range(stride):
        a = line[x - channels] if x >= channels else 0
        b = previous[x]
        c = previous[x - channels] if x >= channels else 0
        if kind == 1:
            line[x] = (line[x] + a) & 0xFF
        elif kind == 2:
            line[x] = (line[x] + b) & 0xFF
        elif kind == 3:
            line[x] = (line[x] + (a + b) // 2) & 0xFF
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    pixels.update(bytes(line[i:i + 3]) for i in range(0, stride, channels))
    previous = line

total = width * height
top_colour, top_count = pixels.most_common(1)[0]
# The leader colours of the map (style.css --colour-0..2: stores 1, 2, 3).
leader_colours = {bytes.fromhex(c): 0 for c in ("8ec5ff", "ffb870", "8fdc9a")}
for colour in leader_colours:
    leader_colours[colour] = pixels[colour]
problems = []
if (width, height) != (1280, 900):
    problems.append(f"{width}x{height}, not 1280x900")
if size < 20_000:
    problems.append(f"only {size} bytes")
if len(pixels) < 32:
    problems.append(f"only {len(pixels)} distinct colours")
if top_count > 0.97 * total:
    problems.append(f"{top_count / total:.1%} of the pixels are #{top_colour.hex()}")
if sum(leader_colours.values()) < 2000:
    problems.append(f"the map's leader colours are (almost) absent: {leader_colours}")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
shown = ", ".join(f"#{c.hex()}: {n}" for c, n in leader_colours.items())
print(f"ui: screenshot ok: {width}x{height}, {size} bytes, {len(pixels)} colours, "
      f"background {top_count / total:.0%}, leader colours {shown}", file=sys.stderr)
PY

# ---------------------------------------------------------------- authentication
log "switching authentication on"
enabled=""
for _ in $(seq 1 40); do
  # 409 no_admin_credential until the placement driver has recorded the root token.
  if curl -fsS -o /dev/null -m 10 -X POST -H 'content-type: application/json' \
    -H "Authorization: Bearer $ROOT_TOKEN" --data '{}' "$base/v1/auth/enable" 2>/dev/null; then
    enabled=1
    break
  fi
  sleep 0.5
done
[ -n "$enabled" ] || fail "POST /v1/auth/enable did not succeed within 20 s"
status=""
for _ in $(seq 1 40); do
  status=$(curl -sS -o /dev/null -m 10 -w '%{http_code}' "$base/v1/admin/stores" || true)
  [ "$status" = 401 ] && break
  sleep 0.25
done
[ "$status" = 401 ] || fail "with authentication on, GET /v1/admin/stores answered $status, not 401"
code=$(curl -sS -o /dev/null -m 10 -w '%{http_code}' \
  -H "Authorization: Bearer $ROOT_TOKEN" "$base/v1/admin/stores" || true)
[ "$code" = 200 ] || fail "the root token got $code from GET /v1/admin/stores, not 200"

log "rendering $base/ui with authentication on (DOM)"
: >"$tmp/chromium.log"
chrome --enable-logging=stderr --virtual-time-budget=5000 --dump-dom "$base/ui" >"$OUT/ui-auth.html" \
  || fail "chromium --dump-dom failed"
if grep -E ':CONSOLE.*(Uncaught|Refused to)' "$tmp/chromium.log" >&2; then
  fail "the page logged errors with authentication on"
fi
chrome --window-size=1280,900 --virtual-time-budget=5000 --screenshot="$OUT/ui-auth.png" "$base/ui" \
  || fail "chromium --screenshot failed"
cat "$tmp/chromium.log" >>"$OUT/chromium.log" 2>/dev/null || true

log "checking the token form"
python3 - "$OUT/ui-auth.html" <<'PY' || fail "with authentication on, the page does not ask for a token"
import sys
from html.parser import HTMLParser


class Elements(HTMLParser):
    """Collects the attributes of every element with an id, and every input by form."""

    def __init__(self):
        super().__init__()
        self.by_id = {}
        self.form = None
        self.inputs = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.by_id[attrs["id"]] = (tag, attrs)
        if tag == "form":
            self.form = attrs.get("id")
        elif tag == "input" and self.form == "token-form":
            self.inputs.append(attrs)

    def handle_endtag(self, tag):
        if tag == "form":
            self.form = None


page = Elements()
page.feed(open(sys.argv[1], encoding="utf-8").read())
problems = []
panel = page.by_id.get("auth-panel", (None, {}))[1]
if "hidden" in panel or panel.get("data-auth-state") != "needed":
    problems.append(f"#auth-panel is {panel} (expected shown, data-auth-state=needed)")
form = page.by_id.get("token-form")
if form is None or form[0] != "form" or "hidden" in form[1]:
    problems.append(f"#token-form is {form} (expected a shown form)")
if not any(i.get("type") == "password" for i in page.inputs):
    problems.append(f"the token form has no password input: {page.inputs}")
message = page.by_id.get("auth-message", (None, {}))[1]
if "hidden" in message:
    problems.append("#auth-message is hidden")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("ui: token form ok: shown with a password input, state needed", file=sys.stderr)
PY

log "passed; artifacts in $OUT"
