// multipart-upload: a document with one large attachment PUT as `multipart/related` (how
// CouchDB's replicator pushes attachments, and nano's `multipart.insert`), through couchgate
// and straight at the backend: time, and couchgate's peak memory, which must not grow with the
// attachment (it streams to a CouchDB backend; other backends get bodies whole).
import http from 'node:http';
import crypto from 'node:crypto';
import { rssMiB } from './lib/procs.mjs';
import { fmt, log, mdTable, median, timeRatio } from './lib/util.mjs';

export const describe = 'a multipart/related PUT of one document with a large attachment: time ratio, couchgate peak RSS against attachment size';
export const options = {
  mib: { def: 200, help: 'attachment size, MiB' },
  reps: { def: 3, help: 'repetitions, paths alternating' },
};

const BOUNDARY = 'bench-MiXeD-boundary';
const CHUNK = 1 << 20;

/** PUTs the body, generated as it is sent (the client holds one chunk); resolves to ms. */
function upload(url, { auth, size, id }) {
  const data = crypto.randomBytes(CHUNK);
  const doc = JSON.stringify({ _id: id, _attachments: { 'big.bin': { follows: true, length: size, content_type: 'application/octet-stream' } } });
  const head = Buffer.from(`--${BOUNDARY}\r\nContent-Type: application/json\r\n\r\n${doc}\r\n--${BOUNDARY}\r\nContent-Disposition: attachment; filename="big.bin"\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${BOUNDARY}--`);
  const u = new URL(`${url}/${id}`);
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'PUT',
      auth: u.username ? `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}` : undefined,
      headers: {
        'Content-Type': `multipart/related; boundary="${BOUNDARY}"`,
        'Content-Length': head.length + size + tail.length,
        ...(auth ? { Authorization: auth } : {}),
      },
    }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => (res.statusCode === 201 ? resolve(Number(process.hrtime.bigint() - t) / 1e6)
        : reject(new Error(`PUT ${id} -> ${res.statusCode} ${body.slice(0, 200)}`))));
    });
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      if (sent === 0) req.write(head);
      while (sent < size) {
        const n = Math.min(CHUNK, size - sent);
        sent += n;
        if (!req.write(n === CHUNK ? data : data.subarray(0, n))) return req.once('drain', pump);
      }
      req.end(tail);
    };
    pump();
  });
}

export async function run(ctx) {
  const size = ctx.args.mib * CHUNK;
  const shared = `bench_mu_${ctx.tag}`;
  const gate = await ctx.startGate({ database: shared, extraArgs: ['--max-body-bytes', String(size + CHUNK)] });
  const user = 'uploader';
  await ctx.gateCreateDb(gate, user, 'notes');
  const auth = `Bearer ${ctx.token(user)}`;
  const directUrl = await ctx.createBackendDb(`bench_mu_direct_${ctx.tag}`);
  const before = rssMiB(gate.pid);
  const times = { gate: [], direct: [] };
  for (let r = 0; r < ctx.args.reps; r++) {
    times.direct.push(await upload(directUrl, { size, id: `d${r}` }));
    times.gate.push(await upload(`${gate.url}/notes`, { auth, size, id: `g${r}` }));
    log(`rep ${r}: direct ${fmt(times.direct[r])} ms, couchgate ${fmt(times.gate[r])} ms, couchgate peak RSS ${fmt(rssMiB(gate.pid).hwm)} MiB`);
  }
  const after = rssMiB(gate.pid);
  const [g, d] = [median(times.gate), median(times.direct)];
  ctx.section(`One ${ctx.args.mib} MiB attachment, multipart/related PUT`, mdTable(['', 'direct', 'couchgate', 'ratio'], [
    ['time (median)', `${fmt(d / 1000)} s`, `${fmt(g / 1000)} s`, fmt(timeRatio(g, d), 2)],
    ['throughput', `${fmt(size / CHUNK / (d / 1000))} MiB/s`, `${fmt(size / CHUNK / (g / 1000))} MiB/s`, ''],
    ['couchgate RSS before / after', '', `${fmt(before.rss)} / ${fmt(after.rss)} MiB`, ''],
    ['couchgate peak RSS (VmHWM)', '', `${fmt(after.hwm)} MiB (${fmt(after.hwm - before.hwm)} MiB over the start's peak)`, ''],
  ]) + `\n\n${ctx.args.reps} uploads per path, alternating; the client generates the body as it sends it.`);
}
