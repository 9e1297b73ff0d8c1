// Fetching a bundle's files: retries for transient failures, and weight chunks downloaded in parallel, checked
// against their sha256 and kept in the Cache API under that hash, so any bundle that shares a chunk (a second
// visit, a new version of the model) reads it from the cache instead of the network.

import { TfcError, fail } from './errors.js';

const ATTEMPTS = 4;
const PARALLEL = 4;
const CACHE = 'tfc-chunks';
const cacheKey = (sha256) => `https://tfc.invalid/sha256/${sha256}`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const retryable = (status) => status === 408 || status === 429 || status >= 500;

// Fetches `url` and hands the response to `read`, retrying network errors and transient HTTP statuses.
async function fetchWithRetries(url, read, signal) {
  for (let attempt = 1; ; attempt++) {
    let reason;
    try {
      const response = await fetch(url, { signal });
      if (response.ok) return await read(response);
      if (!retryable(response.status)) {
        fail('network', `${url}: HTTP ${response.status}; check the URL, and that the bundle folder was copied to the server completely`);
      }
      reason = `HTTP ${response.status}`;
    } catch (e) {
      if (e instanceof TfcError || signal?.aborted) throw e;
      reason = e.message;
    }
    if (attempt === ATTEMPTS) {
      fail('network', `${url} could not be downloaded in ${ATTEMPTS} attempts (last: ${reason}); check the connection and load again`);
    }
    await sleep(250 * 2 ** attempt);
  }
}

export const fetchText = (url) => fetchWithRetries(url, (r) => r.text());

export async function fetchJson(url) {
  const text = await fetchText(url);
  try {
    return JSON.parse(text);
  } catch (e) {
    return fail('bad-bundle', `${url} is not valid JSON (${e.message}); recompile the bundle`, e);
  }
}

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

async function sha256(bytes) {
  if (!globalThis.crypto?.subtle) {
    fail('insecure-context', 'weight chunks are checked with SubtleCrypto, which browsers offer only on https:// or ' +
      'http://localhost pages; serve the bundle over https');
  }
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

// The response body in one array of the chunk's size, reporting the bytes received so far.
async function readChunk(response, chunk, onBytes) {
  const bytes = new Uint8Array(chunk.size);
  let received = 0;
  for (const reader = response.body.getReader(); ;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.length > chunk.size) {
      fail('integrity', `weight chunk ${chunk.file} is larger than the manifest says (${chunk.size} bytes); upload the bundle again`);
    }
    bytes.set(value, received);
    received += value.length;
    onBytes(received);
  }
  return bytes.subarray(0, received);
}

async function openCache() {
  try {
    return await globalThis.caches?.open(CACHE);
  } catch {
    return undefined; // no Cache API here (e.g. an opaque origin): every chunk comes from the network
  }
}

async function store(cache, chunk, bytes) {
  try {
    await cache.put(cacheKey(chunk.sha256), new Response(bytes));
  } catch (e) {
    if (e?.name === 'QuotaExceededError') {
      fail('storage-quota', `the browser refused to store weight chunk ${chunk.file} (${(chunk.size / 2 ** 20).toFixed(1)} MiB): ` +
        "this site's storage quota is full; free space in the site's settings, or load with { cache: false }", e);
    }
    // Other cache failures (e.g. storage disabled in a private window) cost only the next visit's download.
  }
}

/**
 * Gets every chunk (from the cache or the server, at most PARALLEL at a time), checks its size and sha256, and
 * hands it to `use(index, bytes)`. `onProgress` sees {loaded, total, fraction} in bytes of chunks.
 */
export async function loadChunks(base, chunks, { cache: useCache, onProgress }, use) {
  const cache = useCache ? await openCache() : undefined;
  const total = chunks.reduce((sum, c) => sum + c.size, 0);
  const received = new Array(chunks.length).fill(0);
  let loaded = 0;
  const progress = (i, bytes) => {
    loaded += bytes - received[i];
    received[i] = bytes;
    onProgress?.({ loaded, total, fraction: total ? loaded / total : 1 });
  };
  const abort = new AbortController();

  async function get(i) {
    const chunk = chunks[i];
    const cached = await cache?.match(cacheKey(chunk.sha256));
    if (cached) {
      const bytes = new Uint8Array(await cached.arrayBuffer());
      if (bytes.length === chunk.size && (await sha256(bytes)) === chunk.sha256) return bytes;
      await cache.delete(cacheKey(chunk.sha256));
    }
    const url = new URL(chunk.file, base);
    const bytes = await fetchWithRetries(url, (response) => {
      progress(i, 0);
      return readChunk(response, chunk, (n) => progress(i, n));
    }, abort.signal);
    const actual = await sha256(bytes);
    if (bytes.length !== chunk.size || actual !== chunk.sha256) {
      fail('integrity', `weight chunk ${url} is corrupt (${bytes.length} bytes with sha256 ${actual}; the manifest says ` +
        `${chunk.size} bytes with sha256 ${chunk.sha256}); upload the bundle to the server again`);
    }
    if (cache) await store(cache, chunk, bytes);
    return bytes;
  }

  let next = 0;
  const worker = async () => {
    while (next < chunks.length && !abort.signal.aborted) {
      const i = next++;
      const bytes = await get(i);
      if (abort.signal.aborted) return;
      progress(i, chunks[i].size);
      use(i, bytes);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(PARALLEL, chunks.length) }, worker));
  } catch (e) {
    abort.abort();
    throw e;
  }
}
