// Live sync (live:true, retry:true): changes on either side arrive within a second, and an idle
// live sync does not flood the server with requests.
import { newStats } from '../lib/http.mjs';
import { assert, sleep, waitFor } from '../lib/util.mjs';

const exists = (db, id) => db.get(id).then(() => true, () => false);

export default {
  title: 'live sync: a change on either side arrives within 1 s; no request storm when idle',
  timeout: 90000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const stats = newStats();
    const remote = alice.remote('live', { stats });
    const other = alice.remote('live', { stats: newStats() }); // another device writing to the server
    const local = ctx.local();
    await local.put({ _id: 'seed', v: 1 });
    let paused = 0;
    const h = ctx.live(local, remote);
    h.on('paused', () => { paused++; });
    await waitFor(() => exists(other, 'seed'), { timeout: 10000, what: 'seed to reach the server' });
    await waitFor(() => paused > 0, { timeout: 10000, what: 'live sync to go idle' });

    const lat = { up: [], down: [] };
    for (let i = 0; i < 3; i++) {
      let t = Date.now();
      await local.put({ _id: `up-${i}`, i });
      await waitFor(() => exists(other, `up-${i}`), { timeout: 5000, interval: 10, what: `up-${i} on the server` });
      lat.up.push(Date.now() - t);
      t = Date.now();
      await other.put({ _id: `down-${i}`, i });
      await waitFor(() => exists(local, `down-${i}`), { timeout: 5000, interval: 10, what: `down-${i} on the client` });
      lat.down.push(Date.now() - t);
    }
    const maxUp = Math.max(...lat.up);
    const maxDown = Math.max(...lat.down);
    assert.ok(maxUp < 1000, `client -> server took ${maxUp} ms (> 1 s): ${lat.up.join(', ')}`);
    assert.ok(maxDown < 1000, `server -> client took ${maxDown} ms (> 1 s): ${lat.down.join(', ')}`);
    assert.equal(h.errors.length, 0, `live sync errored: ${h.errors.map(String).join('; ')}`);

    // idle: count the requests of the live client for 10 s (a measured period, hence the sleep)
    const before = stats.requests;
    const t0 = Date.now();
    await sleep(10000);
    const idle = stats.requests - before;
    const reqs = stats.recent.filter((r) => r.t >= t0);
    ctx.note(`idle 10 s: ${idle} requests: ${reqs.slice(0, 6).map((r) => `${r.method} ${r.url} ${r.status}`).join(' | ')}`);
    assert.ok(idle <= 20, `idle live sync sent ${idle} requests in 10 s (storm); first: ` +
      reqs.slice(0, 4).map((r) => `${r.method} ${r.url} -> ${r.status}`).join(' | '));
    return `latency up ${maxUp} ms, down ${maxDown} ms; ${idle} requests in 10 idle s`;
  },
};
