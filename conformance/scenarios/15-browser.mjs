// A real browser: PouchDB 9 in headless Chromium, on a page from another origin, syncing
// through couchgate with CORS (PouchDB's default fetch sends credentials: 'include').
import { launchChromium, startPageServer } from '../lib/browser.mjs';
import { request } from '../lib/http.mjs';
import { assert, replicate, waitFor } from '../lib/util.mjs';

export default {
  title: 'PouchDB 9 in headless Chromium, cross-origin, through CORS',
  timeout: 120000,
  async run(ctx) {
    const alice = ctx.user('alice');
    const remote = alice.remote('browser'); // the Node side's view of the same database
    const dbUrl = alice.dbUrl('browser');
    const page$ = await startPageServer();
    ctx.onCleanup(() => page$.close());
    const browser = await launchChromium();
    ctx.onCleanup(() => browser.close());
    const page = await browser.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    await page.goto(page$.url);
    const hint = () => (consoleLines.length ? ` (browser console: ${consoleLines.slice(-4).join(' | ')})` : '');

    // preflight as the browser will send it
    if (ctx.isGate) {
      const pre = await request(dbUrl + '/_bulk_docs', {
        method: 'OPTIONS',
        headers: { Origin: page$.url, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' },
      });
      assert.ok(pre.status >= 200 && pre.status < 300, `CORS preflight -> ${pre.status} ${pre.text.slice(0, 150)}`);
      assert.equal(pre.headers.get('access-control-allow-origin'), page$.url, 'preflight Access-Control-Allow-Origin');
      assert.equal(pre.headers.get('access-control-allow-credentials'), 'true', 'preflight Access-Control-Allow-Credentials');
    }

    const token = ctx.isGate ? alice.token : null;
    const pushed = await page.evaluate(async ({ url, token, tag }) => {
      const authFetch = (u, opts) => {
        if (token) opts.headers.set('Authorization', `Bearer ${token}`);
        return PouchDB.fetch(u, opts);
      };
      window.local = new PouchDB(`local-${tag}`);
      window.remote = new PouchDB(url, { fetch: authFetch });
      const docs = [];
      for (let i = 0; i < 50; i++) docs.push({ _id: `b-${String(i).padStart(3, '0')}`, n: i, from: 'browser' });
      await window.local.bulkDocs(docs);
      const bytes = new Uint8Array(256);
      for (let i = 0; i < 256; i++) bytes[i] = i;
      await window.local.put({ _id: 'with-att', _attachments: { 'bytes.bin': { content_type: 'application/octet-stream', data: new Blob([bytes]) } } });
      try {
        const r = await window.local.replicate.to(window.remote);
        return { ok: true, written: r.docs_written };
      } catch (e) {
        return { ok: false, error: `${e.status} ${e.name} ${e.message}` };
      }
    }, { url: dbUrl, token, tag: ctx.tag });
    assert.ok(pushed.ok, `browser push failed: ${pushed.error}${hint()}`);
    assert.equal(pushed.written, 51, 'browser push docs_written');
    assert.equal((await remote.info()).doc_count, 51, 'server doc count after the browser push');
    const att = await remote.getAttachment('with-att', 'bytes.bin');
    assert.deepEqual([...att], Array.from({ length: 256 }, (_, i) => i), 'attachment bytes written by the browser');

    // live sync in the browser; a Node client writes, the browser must receive, and back
    await page.evaluate(() => {
      window.liveErrors = [];
      window.live = window.local.sync(window.remote, { live: true, retry: true });
      window.live.on('error', (e) => window.liveErrors.push(`${e.status} ${e.message}`));
    });
    await remote.bulkDocs([{ _id: 'from-node-1' }, { _id: 'from-node-2', n: 2 }]);
    await waitFor(() => page.evaluate(() => window.local.get('from-node-2').then(() => true, () => false)),
      { timeout: 10000, what: 'the Node write to reach the browser' }).catch((e) => { throw new Error(e.message + hint()); });
    await page.evaluate(() => window.local.put({ _id: 'from-browser-live' }));
    await waitFor(() => remote.get('from-browser-live').then(() => true, () => false),
      { timeout: 10000, what: 'the browser live write to reach the server' });
    const errs = await page.evaluate(() => window.liveErrors);
    assert.deepEqual(errs, [], 'live sync errors in the browser');
    const browserIds = await page.evaluate(async () => {
      window.live.cancel();
      return (await window.local.allDocs()).rows.map((r) => r.id).sort();
    });
    const fresh = ctx.local();
    await replicate(remote, fresh);
    assert.deepEqual(browserIds, (await fresh.allDocs()).rows.map((r) => r.id).sort(), 'browser and server differ');
    return `browser synced ${browserIds.length} docs`;
  },
};
