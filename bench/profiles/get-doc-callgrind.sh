#!/bin/bash
# Instruction counts (callgrind) of couchgate's own CPU for 2,000 GETs of one ~0.8 KB document,
# against the CouchDB of COUCHDB_URL. Counts are repeatable whatever else the machine does.
#   COUCHDB_URL=http://admin:pass@127.0.0.1:5984 bench/profiles/get-doc-callgrind.sh target/release/couchgate out
# then: callgrind_annotate out.1 | head -40
set -euo pipefail
BIN=$1; OUT=$2; PORT=${PORT:-7790}
HERE=$(dirname "$0"); DIR=$(mktemp -d)
SECRET=profile-secret-0123456789
TOKEN=$(node "$HERE/get-load.mjs" token alice "$SECRET")
DB=cgprofile$PORT
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" --listen 127.0.0.1:$PORT \
  --couchdb-url "$COUCHDB_URL" --database $DB --jwt-secret "$SECRET" --data-dir "$DIR" > "$DIR/log" 2>&1 &
VG=$!
for _ in $(seq 1 60); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 1; done
AUTH="Authorization: Bearer $TOKEN"
curl -s -o /dev/null -X PUT -H "$AUTH" http://127.0.0.1:$PORT/notes
curl -s -o /dev/null -X PUT -H "$AUTH" -H 'Content-Type: application/json' http://127.0.0.1:$PORT/notes/doc1 \
  -d "{\"text\":\"$(head -c 700 /dev/zero | tr '\0' x)\",\"n\":1,\"tags\":[\"a\",\"b\"]}"
node "$HERE/get-load.mjs" get http://127.0.0.1:$PORT/notes/doc1 "$TOKEN" 200 > /dev/null   # warm-up
callgrind_control -z $VG > /dev/null
node "$HERE/get-load.mjs" get http://127.0.0.1:$PORT/notes/doc1 "$TOKEN" 2000
callgrind_control -d $VG > /dev/null
kill $VG; wait $VG 2>/dev/null || true
curl -s -o /dev/null -X DELETE "$COUCHDB_URL/$DB"
rm -rf "$DIR"
callgrind_annotate "$OUT.1" 2>/dev/null | grep 'PROGRAM TOTALS'
