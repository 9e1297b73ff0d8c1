// A localhost static file server for the browser tests and benchmarks. It logs every request path, sends
// `Cache-Control: no-store` (so only the Cache API can spare a download), and lets a mount's hook replace a file's
// bytes or cut its response short.
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
};

function isFile(file) {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Serves each folder of `mounts` ({'/prefix/': {dir, hook?}}) and a blank page at `/`. `hook(file, bytes, nth)` sees
 * the file's path in its folder, its bytes and how many times its URL was asked for (1 the first time); it may return
 * other bytes, or 'cut' to send half of them and drop the connection.
 */
export async function serve(mounts) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://localhost');
    requests.push(pathname);
    if (pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><title>tfc test</title>');
      return;
    }
    const prefix = Object.keys(mounts).find((p) => pathname.startsWith(p));
    const mount = mounts[prefix];
    const relative = decodeURIComponent(pathname.slice(prefix?.length ?? 0)) || 'index.html';
    const file = mount && path.join(mount.dir, relative);
    if (!mount || !file.startsWith(mount.dir) || !isFile(file)) {
      res.writeHead(404).end();
      return;
    }
    const nth = requests.filter((p) => p === pathname).length;
    let body = readFileSync(file);
    const hooked = mount.hook?.(relative, body, nth);
    const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    const headers = { 'Content-Type': type, 'Cache-Control': 'no-store', 'Content-Length': body.length };
    if (hooked === 'cut') {
      res.writeHead(200, headers);
      res.write(body.subarray(0, body.length >> 1), () => res.destroy());
      return;
    }
    if (hooked) body = hooked;
    res.writeHead(200, { ...headers, 'Content-Length': body.length }).end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
