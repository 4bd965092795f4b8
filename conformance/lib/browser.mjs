// Headless Chromium (Debian's, driven by playwright-core) on a page served from another origin.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { PAGE_PORT, ROOT } from './procs.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>couchgate conformance</title>
<script src="/pouchdb.min.js"></script></head>
<body><p>PouchDB in a browser, syncing cross-origin.</p></body></html>`;

/** A tiny static server for the page and PouchDB's browser build. */
export async function startPageServer() {
  const pouchJs = path.join(ROOT, 'node_modules', 'pouchdb', 'dist', 'pouchdb.min.js');
  const js = fs.readFileSync(pouchJs);
  const port = PAGE_PORT;
  const server = http.createServer((req, res) => {
    if (req.url === '/' || req.url.startsWith('/?')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    } else if (req.url === '/pouchdb.min.js') {
      res.writeHead(200, { 'Content-Type': 'application/javascript' });
      res.end(js);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

export async function launchChromium() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  let pw;
  try {
    pw = await import('playwright-core');
  } catch (e) {
    throw new Error(`playwright-core is not installed (npm install in ${ROOT}): ${e.message}`);
  }
  const chromium = pw.chromium || pw.default.chromium;
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}
