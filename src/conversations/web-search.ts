// The web search client: a query goes to the configured backend (SearXNG's JSON API, or any URL template that
// answers in its shape), the result pages are fetched through the safe media fetcher (private addresses refused
// unless `media.allowHosts` names them) and reduced to their readable text. Kept free of conversations so that
// other services (the Research API) can use it as is.
import { readFile } from 'node:fs/promises';
import { Readability } from '@mozilla/readability';
import { parseHTML } from 'linkedom';
import pLimit from 'p-limit';
import { z } from 'zod';
import type { SearchSettings } from '../config/schema.ts';
import { createMediaFetcher, type MediaFetcher } from '../media/fetch-media.ts';
import { Scratch } from '../media/scratch.ts';
import { isAbortError, OcularError, validationError } from '../spec/errors.ts';

export interface WebSearchRequest {
  query: string;
  /** Result pages to read. */
  numOfSite: number;
  /** Words kept from each page. */
  maxWord: number;
  /** Results whose URL this refuses are dropped before any page is read (domain filters). */
  acceptUrl?: ((url: string) => boolean) | undefined;
}

/** One page found for a query, numbered from 1 in the order the backend ranked it. */
export interface WebSource {
  index: number;
  title: string;
  url: string;
  /** The page's readable text (or the backend's snippet when the page could not be read), cut to `maxWord` words. */
  text: string;
}

export interface WebSearch {
  search(request: WebSearchRequest, signal: AbortSignal): Promise<WebSource[]>;
  /** One page's readable text (through the safe fetcher, capped at `search.maxPageBytes`); undefined when unreadable. */
  read(url: string, signal: AbortSignal): Promise<{ title: string; text: string; url: string } | undefined>;
  close(): Promise<void>;
}

export interface WebSearchOptions {
  settings: SearchSettings;
  /** Hosts result pages may be on despite resolving to private addresses (`media.allowHosts`). */
  allowHosts: readonly string[];
  connectTimeoutMs: number;
}

/** What the config error for a missing backend says, wherever web search is asked for. */
export const HOW_TO_CONFIGURE_SEARCH =
  'no web search backend is configured: add "search": {"provider": "https://searx.example.org"} (a SearXNG instance with ' +
  'the JSON format enabled) or {"provider": "https://search.example/api?q={query}"} (any endpoint answering SearXNG\'s JSON) ' +
  'to ocular.config.json; see README, "Web search"';

/** SearXNG's answer, leniently: results without a usable URL are skipped. */
const searchResponseSchema = z.looseObject({
  results: z
    .array(
      z.looseObject({
        url: z.string().catch(''),
        title: z.string().catch('').optional(),
        content: z.string().catch('').optional(),
      }),
    )
    .catch([]),
});

const HTML_TYPES = /^\s*(?:text\/html|application\/xhtml\+xml)/i;
const TEXT_TYPES = /^\s*text\/plain/i;
/** Results the backend is asked for beyond `numOfSite`, so that unreadable pages can be replaced. */
const EXTRA_RESULTS = 3;

/** The first `maxWord` words of `text`, whitespace collapsed. */
export function limitWords(text: string, maxWord: number): string {
  const words = text.split(/\s+/).filter((word) => word !== '');
  return words.length <= maxWord ? words.join(' ') : `${words.slice(0, maxWord).join(' ')} …`;
}

/** The URL the backend is called with for `query`. */
export function searchUrl(provider: string, query: string): string {
  if (provider.includes('{query}')) return provider.replaceAll('{query}', encodeURIComponent(query));
  const url = new URL(provider);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/search`;
  url.searchParams.set('q', query);
  url.searchParams.set('format', 'json');
  return url.toString();
}

/** The readable text of an HTML page (Readability's article, else the body's text) and its title. */
export function readableText(html: string, url: string): { title: string; text: string } {
  const { document } = parseHTML(html);
  let title = document.title ?? '';
  let text = '';
  try {
    const article = new Readability(document as unknown as Document, { charThreshold: 100 }).parse();
    if (article?.textContent) text = article.textContent;
    if (article?.title) title = article.title;
  } catch {
    // Readability gives up on some documents; the body's text is still worth having.
  }
  if (text.trim() === '') {
    const fallback = parseHTML(html).document;
    for (const element of fallback.querySelectorAll('script, style, noscript, template')) element.remove();
    text = fallback.body?.textContent ?? '';
  }
  return { title: title.trim() || url, text };
}

/** The sources as a model is given them: numbered, so that it can cite `[n]`. */
export function formatSources(sources: readonly WebSource[]): string {
  return sources.map((source) => `[${source.index}] ${source.title} (${source.url})\n${source.text}`).join('\n\n');
}

/** The backend's host, which the operator chose: exempt from the private-address block, unlike result pages. */
function providerHost(provider: string): string {
  const url = new URL(provider.replaceAll('{query}', 'q'));
  return url.host;
}

/** The configured web search, or undefined when `search.provider` is not set. */
export function createWebSearch(options: WebSearchOptions): WebSearch | undefined {
  const { settings } = options;
  const provider = settings.provider;
  if (provider === undefined) return undefined;
  const common = { connectTimeoutMs: options.connectTimeoutMs, timeoutMs: settings.timeoutMs };
  const backend: MediaFetcher = createMediaFetcher({ ...common, maxBytes: settings.maxPageBytes, allowHosts: [providerHost(provider)] });
  const pages: MediaFetcher = createMediaFetcher({ ...common, maxBytes: settings.maxPageBytes, allowHosts: options.allowHosts });

  const query = async (text: string, scratch: Scratch, signal: AbortSignal) => {
    let body: string;
    try {
      const fetched = await backend.fetch(searchUrl(provider, text), 'search.provider', scratch, signal);
      body = await readFile(fetched.path, 'utf8');
    } catch (error) {
      if (signal.aborted || isAbortError(error)) throw error;
      throw new OcularError('upstream_error', `the web search backend failed: ${(error as Error).message}`, { cause: error });
    }
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch (error) {
      throw new OcularError('upstream_error', 'the web search backend did not answer with JSON (is its JSON format enabled?)', {
        cause: error,
      });
    }
    return searchResponseSchema.parse(json).results.filter((result) => /^https?:\/\//i.test(result.url));
  };

  const readPage = async (url: string, index: number, scratch: Scratch, signal: AbortSignal) => {
    try {
      const fetched = await pages.fetch(url, `sources.${index}`, scratch, signal);
      const type = fetched.contentType ?? '';
      const body = await readFile(fetched.path, 'utf8');
      if (HTML_TYPES.test(type)) return readableText(body, fetched.finalUrl);
      if (TEXT_TYPES.test(type)) return { title: '', text: body };
      return undefined;
    } catch (error) {
      if (signal.aborted) throw error;
      return undefined; // a page that cannot be read (refused, gone, too large) leaves its snippet
    }
  };

  return {
    async search(request, signal) {
      if (request.query.trim() === '') throw validationError('a web search needs a non-empty prompt', 'promptObject.prompt');
      const scratch = await Scratch.create();
      try {
        const results = (await query(request.query, scratch, signal))
          .filter((result) => request.acceptUrl?.(result.url) ?? true)
          .slice(0, request.numOfSite + EXTRA_RESULTS);
        const limit = pLimit(Math.max(1, request.numOfSite));
        const read = await Promise.all(results.map((result, index) => limit(() => readPage(result.url, index, scratch, signal))));
        const sources: WebSource[] = [];
        for (const [index, result] of results.entries()) {
          if (sources.length >= request.numOfSite) break;
          const page = read[index];
          const text = page && page.text.trim() !== '' ? page.text : (result.content ?? '');
          if (text.trim() === '') continue;
          sources.push({
            index: sources.length + 1,
            title: result.title?.trim() || page?.title || result.url,
            url: result.url,
            text: limitWords(text, request.maxWord),
          });
        }
        return sources;
      } finally {
        await scratch.dispose();
      }
    },
    async read(url, signal) {
      const scratch = await Scratch.create();
      try {
        const page = await readPage(url, 0, scratch, signal);
        return page === undefined ? undefined : { ...page, url };
      } finally {
        await scratch.dispose();
      }
    },
    async close() {
      await Promise.all([backend.close(), pages.close()]);
    },
  };
}
