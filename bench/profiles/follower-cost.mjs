// What a changes follower alone costs a push, without couchgate: PouchDB 9 pushes 10,000 docs
// of ~1 KB straight into a fresh database of the CouchDB at COUCHDB_URL, with and without a
// client reading that database's feed as couchgate's follower does (longpoll, style=all_docs,
// seq_interval; with the argument `continuous`, one continuous feed), alternating, 3 times each. Prints time, backend CPU per 1k docs (COUCHDB_PID's
// /proc stat) and the follower's reads.
//   COUCHDB_URL=http://admin:pass@127.0.0.1:5984 COUCHDB_PID=$(pgrep -f beam.smp) node bench/profiles/follower-cost.mjs
import { PouchDB } from '../../conformance/lib/pouch.mjs';
import { cpuSeconds } from '../lib/procs.mjs';
import { makeDoc } from '../lib/util.mjs';

const url = new URL(process.env.COUCHDB_URL);
const auth = url.username ? { Authorization: `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}` } : {};
const plain = `${url.protocol}//${url.host}`;
const pid = Number(process.env.COUCHDB_PID);
const docs = Array.from({ length: 10000 }, (_, i) => makeDoc(`rep-${String(i).padStart(6, '0')}`, i));
const src = new PouchDB('follower-cost-src', { adapter: 'memory' });
for (let i = 0; i < docs.length; i += 1000) await src.bulkDocs(docs.slice(i, i + 1000));

// `continuous` in argv: the follower holds one continuous feed instead of longpolls.
const continuous = process.argv.includes('continuous');

async function followContinuous(db, stop) {
  const ctl = new AbortController();
  const q = 'style=all_docs&seq_interval=1000&feed=continuous&heartbeat=1000&since=now';
  const res = await fetch(`${plain}/${db}/_changes?${q}`, { headers: auth, signal: ctl.signal });
  let lines = 0;
  const reader = res.body.getReader();
  const poll = setInterval(() => { if (stop.done) ctl.abort(); }, 50);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      lines += Buffer.from(value).toString().split('\n').filter((l) => l.startsWith('{')).length;
    }
  } catch { /* aborted */ }
  clearInterval(poll);
  return `1 request, ${lines} rows`;
}

async function follow(db, stop) {
  if (continuous) return followContinuous(db, stop);
  let since = 'now';
  let reads = 0;
  while (!stop.done) {
    const q = `style=all_docs&seq_interval=1000&limit=1000&feed=longpoll&timeout=2000&since=${encodeURIComponent(since)}`;
    const res = await fetch(`${plain}/${db}/_changes?${q}`, { headers: auth });
    since = (await res.json()).last_seq;
    reads++;
  }
  return reads;
}

for (let rep = 0; rep < 3; rep++) {
  for (const withFollower of rep % 2 ? [true, false] : [false, true]) {
    const db = `bench_follower_cost_${rep}_${withFollower ? 'f' : 'n'}`;
    await fetch(`${plain}/${db}`, { method: 'PUT', headers: auth });
    const stop = { done: false };
    const reads = withFollower ? follow(db, stop) : Promise.resolve(0);
    const c0 = cpuSeconds(pid);
    const t = Date.now();
    await src.replicate.to(new PouchDB(`${process.env.COUCHDB_URL.replace(/\/$/, '')}/${db}`));
    const ms = Date.now() - t;
    const cpu = (cpuSeconds(pid) - c0) * 100; // ms per 1k docs of 10k
    stop.done = true;
    console.log(`rep ${rep + 1}, follower ${withFollower ? 'on ' : 'off'}: push ${ms} ms, backend CPU ${Math.round(cpu)} ms per 1k docs, feed reads ${await reads}`);
    await fetch(`${plain}/${db}`, { method: 'DELETE', headers: auth });
  }
}
await src.destroy();
