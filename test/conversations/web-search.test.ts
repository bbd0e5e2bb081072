import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { searchSchema } from '../../src/config/schema.ts';
import { createWebSearch, limitWords, readableText, searchUrl } from '../../src/conversations/web-search.ts';

let backend: Server;
let pages: Server;
let backendBody = '{}';
let backendUrl = '';
let pagesHost = '';

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

function search(provider: string, allowHosts: string[] = [pagesHost], maxPageBytes = 4096) {
  return createWebSearch({
    settings: searchSchema.parse({ provider, timeoutMs: 2_000, maxPageBytes }),
    allowHosts,
    connectTimeoutMs: 1_000,
  })!;
}

beforeAll(async () => {
  backend = createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(backendBody);
  });
  pages = createServer((request, response) => {
    if (request.url === '/big') {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end(`<html><body><p>${'word '.repeat(5000)}</p></body></html>`);
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end('<html><head><title>Tea</title></head><body><p>Green tea is steamed; black tea is oxidised fully.</p></body></html>');
  });
  backendUrl = `http://${await listen(backend)}`;
  pagesHost = await listen(pages);
});

afterAll(() => {
  backend?.close();
  pages?.close();
});

describe('web search helpers', () => {
  it('builds SearXNG and template URLs', () => {
    expect(searchUrl('https://searx.example.org', 'red tea')).toBe('https://searx.example.org/search?q=red+tea&format=json');
    expect(searchUrl('https://example.org/searx/', 'a&b')).toBe('https://example.org/searx/search?q=a%26b&format=json');
    expect(searchUrl('https://s.example/api?key=1&q={query}', 'a b/c')).toBe('https://s.example/api?key=1&q=a%20b%2Fc');
  });

  it('cuts text to a number of words', () => {
    expect(limitWords('  one\ttwo \n three four ', 3)).toBe('one two three …');
    expect(limitWords('one two', 3)).toBe('one two');
  });

  it('reads the article of a page, not its scripts', () => {
    const { title, text } = readableText(
      '<html><head><title>T</title><script>bad()</script></head><body><p>Only this.</p></body></html>',
      'http://x/',
    );
    expect(title).toBe('T');
    expect(text).toContain('Only this.');
    expect(text).not.toContain('bad()');
  });

  it('is off without a provider', () => {
    expect(createWebSearch({ settings: searchSchema.parse({}), allowHosts: [], connectTimeoutMs: 1000 })).toBeUndefined();
  });
});

describe('createWebSearch', () => {
  it('reads allowed pages, keeps snippets for refused or oversized ones, numbers what it keeps', async () => {
    backendBody = JSON.stringify({
      results: [
        { url: `http://${pagesHost}/tea`, title: 'About tea', content: 'snippet' },
        { url: 'ftp://example.org/file', title: 'Not http', content: 'skipped' },
        { url: `http://${pagesHost}/big`, title: 'Big page', content: 'big snippet' },
        { url: 'http://10.0.0.1/', title: 'Private', content: 'private snippet' },
        { url: 'http://example.invalid/', title: 'No text', content: '' },
      ],
    });
    const client = search(`${backendUrl}/search?q={query}`, [pagesHost], 4096);
    try {
      const sources = await client.search({ query: 'tea', numOfSite: 5, maxWord: 5 }, AbortSignal.timeout(5_000));
      expect(sources).toEqual([
        { index: 1, title: 'About tea', url: `http://${pagesHost}/tea`, text: 'Green tea is steamed; black …' },
        { index: 2, title: 'Big page', url: `http://${pagesHost}/big`, text: 'big snippet' },
        { index: 3, title: 'Private', url: 'http://10.0.0.1/', text: 'private snippet' },
      ]);
    } finally {
      await client.close();
    }
  });

  it('refuses pages on loopback unless allowed', async () => {
    backendBody = JSON.stringify({ results: [{ url: `http://${pagesHost}/tea`, title: 'Tea', content: 'only the snippet' }] });
    const client = search(backendUrl, []);
    try {
      const [source] = await client.search({ query: 'tea', numOfSite: 1, maxWord: 50 }, AbortSignal.timeout(5_000));
      expect(source!.text).toBe('only the snippet');
    } finally {
      await client.close();
    }
  });

  it('reports a backend that fails or does not answer JSON as upstream_error', async () => {
    backendBody = 'not json';
    const broken = search(backendUrl);
    const down = search('http://127.0.0.1:9/search');
    try {
      await expect(broken.search({ query: 'q', numOfSite: 1, maxWord: 10 }, AbortSignal.timeout(5_000))).rejects.toMatchObject({
        type: 'upstream_error',
      });
      await expect(down.search({ query: 'q', numOfSite: 1, maxWord: 10 }, AbortSignal.timeout(5_000))).rejects.toMatchObject({
        type: 'upstream_error',
      });
    } finally {
      await Promise.all([broken.close(), down.close()]);
    }
  });
});
