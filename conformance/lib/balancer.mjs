// A round-robin HTTP balancer without stickiness, for scale-out scenarios: every request goes
// to the next upstream in turn, bodies streamed both ways. It records, per `_changes` answer,
// which upstream gave it and how many rows it carried (normal and longpoll feeds), so a
// scenario can tell what each switch of instance cost.
import http from 'node:http';

export async function startBalancer(upstreams) {
  let next = 0;
  const feeds = []; // { upstream, rows, since }
  const counts = upstreams.map(() => 0);
  const server = http.createServer((req, res) => {
    const i = next++ % upstreams.length;
    counts[i]++;
    const target = new URL(req.url, upstreams[i]);
    const headers = { ...req.headers, host: target.host };
    const up = http.request(target, { method: req.method, headers }, (ures) => {
      res.writeHead(ures.statusCode, ures.headers);
      const isFeed = /\/_changes(\?|$)/.test(target.pathname + target.search) && !/feed=(continuous|eventsource)/.test(target.search);
      const chunks = [];
      ures.on('data', (c) => { if (isFeed) chunks.push(c); res.write(c); });
      ures.on('end', () => {
        res.end();
        if (!isFeed || ures.statusCode !== 200) return;
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString());
          feeds.push({ upstream: i, rows: body.results.length, since: target.searchParams.get('since') });
        } catch { /* not a JSON feed */ }
      });
    });
    up.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
    req.on('aborted', () => up.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    feeds,
    counts,
    async stop() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}
