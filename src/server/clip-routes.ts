import type { Context, Hono } from 'hono';
import { isOcularError, OcularError } from '../spec/errors.ts';
import type { ClipRecord } from '../store/clip-store.ts';
import type { UrlSigner } from '../vision/signed-urls.ts';
import { deletedClipEvent, type ClipEvent, type ClipService } from '../vision/clips.ts';
import { parseBody } from './errors.ts';
import { fileResponse } from './file-response.ts';
import { streamProgress } from './progress-stream.ts';
import { readJson } from './read-body.ts';
import type { RequestEdge } from './vision-routes.ts';
import { createClipSchema, listClipsQuerySchema, toWireClip, toWireClipEvent } from './wire/clips.ts';

export interface ClipRouteDependencies {
  clips: ClipService;
  signer: UrlSigner;
  /** Seconds a signed URL stays valid. */
  urlTtlSeconds: number;
  /** The origin signed URLs are built on; absent, each request's own. */
  publicBaseUrl?: string | undefined;
}

type ClipEnv = { Variables: { requestId: string; owner: string } };

export const outputPath = (clipId: string, index: number): string => `/v1/clips/${clipId}/outputs/${index}.mp4`;

/** A clip's rendered files, by signed URL (registered before the API-key middleware: the signature is the credential). */
export function registerClipBlobRoutes(app: Hono<ClipEnv>, deps: ClipRouteDependencies): void {
  app.on(['GET', 'HEAD'], '/v1/clips/:id/outputs/:file{[0-9]{1,2}\\.mp4}', async (c) => {
    const verdict = deps.signer.verify(new URL(c.req.url).pathname, {
      expires: c.req.query('expires'),
      signature: c.req.query('signature'),
    });
    if (verdict === 'expired')
      throw new OcularError('permission_error', 'this signed URL has expired; fetch the clip again for a fresh one');
    if (verdict !== 'ok') throw new OcularError('permission_error', 'this URL is not validly signed');
    const source = await deps.clips.outputSource(c.req.param('id'), Number.parseInt(c.req.param('file'), 10));
    if (source === undefined) throw new OcularError('not_found_error', 'no such clip output');
    return fileResponse(source, c.req.raw, { contentType: 'video/mp4', cacheControl: 'private, max-age=3600' });
  });
}

/** `POST/GET /v1/clips`, `GET/DELETE /v1/clips/{id}` and `GET /v1/clips/{id}/events`, each scoped to the caller's owner. */
export function registerClipRoutes(app: Hono<ClipEnv>, deps: ClipRouteDependencies, edge: RequestEdge): void {
  const { clips } = deps;
  const wireClip = (c: Context, clip: ClipRecord) =>
    toWireClip(clip, (output) => {
      const origin = deps.publicBaseUrl ?? new URL(c.req.url).origin;
      return origin + deps.signer.sign(outputPath(clip.id, output.index), new Date(Date.now() + deps.urlTtlSeconds * 1000));
    });

  app.post('/v1/clips', async (c) => {
    const body = parseBody(createClipSchema, await readJson(c, edge.bodyLimits));
    const clip = await clips.create(c.get('owner'), body, edge.requestSignal(c));
    return c.json(wireClip(c, clip));
  });

  app.get('/v1/clips', async (c) => {
    const query = parseBody(listClipsQuerySchema, c.req.query());
    const page = await clips.list(c.get('owner'), query.limit, query.offset);
    return c.json({ results: page.items.map((clip) => wireClip(c, clip)), total: page.total, limit: query.limit, offset: query.offset });
  });

  app.get('/v1/clips/:id', async (c) => c.json(wireClip(c, await clips.get(c.get('owner'), c.req.param('id')))));

  app.delete('/v1/clips/:id', async (c) => {
    const id = c.req.param('id');
    await clips.delete(c.get('owner'), id);
    return c.json({ id, deleted: true });
  });

  app.get('/v1/clips/:id/events', async (c) => {
    const owner = c.get('owner');
    const clip = await clips.get(owner, c.req.param('id'));
    const ended = (event: ClipEvent): boolean => event.status === 'completed' || event.status === 'failed';
    return streamProgress<ClipEvent>(c, {
      subscribe: (listener) => clips.subscribe(clip.id, listener),
      changes: (notice) => clips.watch(clip.id, notice),
      current: async () => {
        // Deleted since the stream began (here or by another process): the stream ends saying so.
        const current = await clips.get(owner, clip.id).catch((error: unknown) => {
          if (isOcularError(error) && error.type === 'not_found_error') return undefined;
          throw error;
        });
        if (current === undefined) return deletedClipEvent(clip.id, clip.progress);
        return { clipId: current.id, status: current.status, stage: current.stage, progress: current.progress, error: current.error };
      },
      follows: (current) => !ended(current),
      isLast: ended,
      toWire: toWireClipEvent,
    });
  });
}
