import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Env, Hono } from 'hono';
import { OcularError } from '../spec/errors.ts';
import { fileResponse } from './file-response.ts';

/** The playground as `npm run build:web` leaves it: `web/dist` in the package, wherever the process runs from. */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../web/dist/', import.meta.url));

export interface WebRouteDependencies {
  /** The built playground (index.html, assets/). @default DEFAULT_WEB_DIR */
  dir: string;
  /** Where signed media URLs point when it is not this server's own origin (`vision.publicBaseUrl`). */
  publicBaseUrl?: string | undefined;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

/** Vite names every built asset by a hash of its content, so a cached copy never goes stale. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * The page runs only its own scripts and styles and talks only to this server; images and videos may also come
 * from the public base URL signed links point at, or be `data:`/`blob:` previews of files the user attached.
 */
export function contentSecurityPolicy(publicBaseUrl: string | undefined): string {
  const media = ["'self'", 'data:', 'blob:', ...(publicBaseUrl === undefined ? [] : [new URL(publicBaseUrl).origin])].join(' ');
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src ${media}`,
    `media-src ${media}`,
    "connect-src 'self'",
    "font-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

const MISSING_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ocular</title></head>
<body><h1>Ocular</h1>
<p>The API is running, but the web playground has not been built. Run <code>npm run build:web</code> in the Ocular
folder (it needs the dev dependencies: <code>npm install</code>), then reload this page.</p>
<p>The API itself is at <code>/v1</code> and <code>/openai/v1</code>.</p></body></html>
`;

/** Names Vite gives files (`index-B1x_9aZ.js`); nothing else, so no path ever leaves the folder. */
const FILE_NAME = '[A-Za-z0-9][A-Za-z0-9._-]{0,199}';

/**
 * The web playground at `/`: public (the page asks for the key and sends it with each API call), so these routes
 * go ahead of the API-key middleware. index.html is revalidated on every load; hashed assets are cached for good.
 */
export function registerWebRoutes<E extends Env>(app: Hono<E>, deps: WebRouteDependencies): void {
  const policy = contentSecurityPolicy(deps.publicBaseUrl);
  const secure = (response: Response): Response => {
    response.headers.set('Content-Security-Policy', policy);
    response.headers.set('X-Content-Type-Options', 'nosniff');
    response.headers.set('X-Frame-Options', 'DENY');
    response.headers.set('Referrer-Policy', 'no-referrer');
    return response;
  };

  const serve = async (c: Context, relative: string, cacheControl: string): Promise<Response> => {
    const extension = extname(relative).toLowerCase();
    const contentType = CONTENT_TYPES[extension];
    if (contentType === undefined) throw new OcularError('not_found_error', `no route for ${c.req.method} ${c.req.path}`);
    return secure(await fileResponse(join(deps.dir, relative), c.req.raw, { contentType, cacheControl }));
  };

  app.on(['GET', 'HEAD'], '/', async (c) => {
    try {
      return await serve(c, 'index.html', 'no-cache');
    } catch (error) {
      if (!(error instanceof OcularError && error.type === 'not_found_error')) throw error;
      const headers = { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' };
      return secure(new Response(c.req.method === 'HEAD' ? null : MISSING_PAGE, { status: 200, headers }));
    }
  });
  app.on(['GET', 'HEAD'], `/assets/:name{${FILE_NAME}}`, (c) => serve(c, join('assets', c.req.param('name')), IMMUTABLE));
  // Files Vite copies from web/public keep their names, so they are revalidated like index.html.
  app.on(['GET', 'HEAD'], `/:name{favicon\\.svg}`, (c) => serve(c, c.req.param('name'), 'no-cache'));
}
