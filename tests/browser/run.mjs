// Load a page using firebase/firestore/lite in headless Chromium, once from
// each origin given, and print one JSON line per origin with what the page
// saw reading an allowed and a refused document through firegate.
//
// node tests/browser/run.mjs --proxy http://127.0.0.1:8080 --project demo \
//   --token JWT --allowed catalog/payments-api --refused secrets/stripe \
//   [--origins 127.0.0.1,127.0.0.2] [--chromium /usr/bin/chromium]
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = { origins: '127.0.0.1', chromium: '/usr/bin/chromium' };
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
for (const required of ['proxy', 'project', 'token', 'allowed', 'refused']) {
  if (!args[required]) { console.error(`--${required} is required`); process.exit(2); }
}
const proxy = new URL(args.proxy);

const bundle = await esbuild.build({
  entryPoints: [path.join(here, 'page.js')], bundle: true, write: false,
  format: 'esm', target: 'es2022', logLevel: 'silent',
});
const script = bundle.outputFiles[0].text;
const html = '<!doctype html><meta charset="utf-8"><title>firegate</title><script type="module" src="/app.js"></script>';

function serve(host) {
  const server = http.createServer((req, res) => {
    if (req.url === '/app.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    } else if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve(server));
  });
}

const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = false;
try {
  for (const host of args.origins.split(',')) {
    const server = await serve(host);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.addInitScript((cfg) => { window.FIREGATE = cfg; }, {
      project: args.project, host: proxy.hostname, port: Number(proxy.port),
      token: args.token, allowed: args.allowed, refused: args.refused,
    });
    page.on('pageerror', (e) => { console.error(`page error: ${e}`); failed = true; });
    await page.goto(`http://${host}:${server.address().port}/`);
    await page.waitForFunction(() => window.result !== undefined, null, { timeout: 20000 });
    console.log(JSON.stringify(await page.evaluate(() => window.result)));
    await context.close();
    server.close();
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
