// The API reference: generated from the routes the server registers and the zod schemas they validate with.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATIONS, toOpenApiPath } from '../../src/server/openapi.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

type Document = {
  openapi: string;
  paths: Record<string, Record<string, Record<string, any>>>;
  components: Record<string, Record<string, unknown>>;
};

let ocular: TestOcular;
let document: Document;

beforeAll(async () => {
  // Every optional part on (the video and image libraries are on by default), so every route is registered.
  ocular = await startOcular({ models: [{ id: 'm', provider: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', model: 'm' }] });
  const response = await fetch(`${ocular.url}/openapi.json`);
  expect(response.status).toBe(200);
  document = (await response.json()) as Document;
});

afterAll(async () => {
  await ocular?.close();
});

const operations = () =>
  Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
  );

describe('OpenAPI document at /openapi.json', () => {
  it('is OpenAPI 3.1, public, and documents every registered route', () => {
    expect(document.openapi).toBe('3.1.0');
    const undocumented = operations()
      .filter(({ operation }) => operation['x-ocular-undocumented'])
      .map(({ method, path }) => `${method.toUpperCase()} ${path}: add it to OPERATIONS in src/server/openapi.ts`);
    expect(undocumented).toEqual([]);
    expect(operations().length).toBeGreaterThan(25);
  });

  it('has no entry for a route that does not exist', () => {
    const listed = new Set(operations().map(({ method, path }) => `${method.toUpperCase()} ${path}`));
    const stale = Object.keys(OPERATIONS).filter((key) => {
      const [method, path] = key.split(' ') as [string, string];
      return !listed.has(`${method} ${toOpenApiPath(path).path}`);
    });
    expect(stale).toEqual([]);
  });

  it('describes bodies, query and path parameters from the zod schemas', () => {
    const search = document.paths['/v1/videos/search']!.post!;
    const body = search.requestBody.content['application/json'].schema;
    expect(body.properties.query).toBeDefined();
    expect(body.properties.image_url).toBeDefined();
    expect(body.properties.max_results).toBeDefined();
    expect(body.additionalProperties).toBe(false);

    const list = document.paths['/v1/videos']!.get!;
    expect(list.parameters.map((parameter: { name: string }) => parameter.name)).toEqual(
      expect.arrayContaining(['limit', 'offset', 'group_id', 'indexing_status']),
    );

    const segment = document.paths['/v1/videos/{id}/segments/{seq}/thumbnail']!.get!;
    expect(segment.parameters.filter((parameter: { in: string }) => parameter.in === 'path').map((p: { name: string }) => p.name)).toEqual([
      'id',
      'seq',
    ]);
    expect(segment.security).toEqual([]);

    const upload = document.paths['/v1/videos/upload']!.post!;
    const form = upload.requestBody.content['multipart/form-data'].schema;
    expect(form.properties.file).toEqual({ type: 'string', format: 'binary' });
    expect(form.required).toContain('video_name');

    const chat = document.paths['/v1/chat']!.post!;
    expect(chat.requestBody.content['application/json'].schema.required).toContain('messages');
    expect(Object.keys(chat.responses['200'].content)).toContain('text/event-stream');
    expect(chat.responses['401']).toEqual({ $ref: '#/components/responses/Error401' });
  });

  it('resolves every $ref', () => {
    const refs: string[] = [];
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value !== null && typeof value === 'object') {
        for (const [key, child] of Object.entries(value)) {
          if (key === '$ref' && typeof child === 'string') refs.push(child);
          else walk(child);
        }
      }
    };
    walk(document);
    expect(refs.length).toBeGreaterThan(0);
    const missing = refs.filter((ref) => {
      const [, section, name] = /^#\/components\/(\w+)\/(\w+)$/.exec(ref) ?? [];
      return section === undefined || document.components[section]?.[name!] === undefined;
    });
    expect(missing).toEqual([]);
  });

  it('renders /docs as one page with no scripts', async () => {
    const response = await fetch(`${ocular.url}/docs`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await response.text();
    expect(html).toContain('/v1/videos/search');
    expect(html).toContain('/openai/v1/chat/completions');
    expect(html).not.toMatch(/<script/i);
  });
});

describe('toOpenApiPath', () => {
  it('turns Hono parameters, with or without patterns, into OpenAPI ones', () => {
    expect(toOpenApiPath('/v1/videos/:id')).toEqual({ path: '/v1/videos/{id}', parameters: ['id'] });
    expect(toOpenApiPath('/v1/videos/:id/segments/:seq{[0-9]{1,9}}/thumbnail')).toEqual({
      path: '/v1/videos/{id}/segments/{seq}/thumbnail',
      parameters: ['id', 'seq'],
    });
    expect(toOpenApiPath('/openai/v1/models/:id{.+}')).toEqual({ path: '/openai/v1/models/{id}', parameters: ['id'] });
  });
});
