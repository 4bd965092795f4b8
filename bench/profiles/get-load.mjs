// Load for bench/profiles/get-doc-callgrind.sh: `token USER SECRET` prints an HS256 token;
// `get URL TOKEN N` sends N GETs, 4 at a time on kept-alive connections.
import http from 'node:http';
import { tokenFor } from '../../conformance/lib/jwt.mjs';

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'token') {
  console.log(tokenFor(args[0], args[1], { ttl: 3600 }));
} else if (cmd === 'get') {
  const [url, token, n] = [args[0], args[1], Number(args[2])];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const one = () => new Promise((resolve, reject) => {
    http.get(url, { agent, headers: { Authorization: `Bearer ${token}` } }, (r) => { r.resume(); r.on('end', resolve); }).on('error', reject);
  });
  const t = Date.now();
  for (let i = 0; i < n; i += 4) await Promise.all([one(), one(), one(), one()]);
  console.log(`${n} GETs in ${Date.now() - t} ms`);
  agent.destroy();
} else {
  throw new Error('usage: get-load.mjs token USER SECRET | get URL TOKEN N');
}
