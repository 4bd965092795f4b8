#!/bin/bash
# Instruction counts (callgrind) of couchgate's own CPU for one load of bench/profiles/load.mjs
# (get, revs_diff, bulk_get, push, pull) against the CouchDB of COUCHDB_URL. Counts are
# repeatable whatever else the machine does; kernel time (socket reads and writes) is not in them.
#   COUCHDB_URL=http://admin:pass@127.0.0.1:5984 bench/profiles/callgrind.sh target/release/couchgate get out
# then: callgrind_annotate out.1 | head -40
set -euo pipefail
BIN=$1; CASE=$2; OUT=$3; PORT=${PORT:-7790}
HERE=$(dirname "$0"); DIR=$(mktemp -d)
SECRET=profile-secret-0123456789
TOKEN=$(node "$HERE/load.mjs" token alice "$SECRET")
DB=cgprofile$PORT
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" --listen 127.0.0.1:$PORT \
  --couchdb-url "$COUCHDB_URL" --database $DB --jwt-secret "$SECRET" --data-dir "$DIR" > "$DIR/log" 2>&1 &
VG=$!
trap 'kill $VG 2>/dev/null || true; curl -s -o /dev/null -X DELETE "$COUCHDB_URL/$DB"; rm -rf "$DIR"' EXIT
for _ in $(seq 1 60); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 1; done
curl -s -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$PORT/notes
node "$HERE/load.mjs" setup "$CASE" http://127.0.0.1:$PORT/notes "$TOKEN"
# A first pass warms caches and pools; only the second is counted.
[ "$CASE" = get ] && node "$HERE/load.mjs" run get http://127.0.0.1:$PORT/notes "$TOKEN" > /dev/null
sleep 1
callgrind_control -z $VG > /dev/null
node "$HERE/load.mjs" run "$CASE" http://127.0.0.1:$PORT/notes "$TOKEN"
sleep 1
callgrind_control -d $VG > /dev/null
kill $VG; wait $VG 2>/dev/null || true
callgrind_annotate "$OUT.1" 2>/dev/null | grep 'PROGRAM TOTALS'
