import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOcular, TEST_KEY, type TestOcular } from '../helpers/ocular.ts';

// A known path called with a method it does not take answers 405 with `Allow`, in the one error envelope: both
// the chat routes served on Node's request and response (chat-routes.ts) and the Hono app's routes.

let ocular: TestOcular;

beforeAll(async () => {
  ocular = await startOcular({});
});

afterAll(async () => {
  await ocular.close();
});

const call = (method: string, path: string, headers: Record<string, string> = { 'x-api-key': TEST_KEY }) =>
  fetch(ocular.url + path, { method, headers });

const allowOf = (response: Response): string[] => (response.headers.get('allow') ?? '').split(/,\s*/).filter(Boolean).sort();

describe('405 method not allowed', () => {
  it.each([
    ['GET', '/v1/chat', ['POST']],
    ['PUT', '/v1/chat/completions', ['POST']],
    ['DELETE', '/openai/v1/chat/completions', ['POST']],
    ['GET', '//v1//chat', ['POST']],
    ['DELETE', '/v1/models', ['GET', 'HEAD']],
    ['POST', '/openai/v1/models', ['GET', 'HEAD']],
    ['POST', '/healthz', ['GET', 'HEAD']],
    ['PUT', '/v1/videos/upload', ['POST']],
    ['PUT', '/v1/videos/groups/some-group', ['DELETE', 'PATCH']],
  ])('%s %s answers 405 with Allow %j', async (method, path, allow) => {
    const response = await call(method, path);
    expect(response.status).toBe(405);
    expect(allowOf(response)).toEqual(expect.arrayContaining(allow));
    expect(allowOf(response)).not.toContain(method);
    expect(response.headers.get('x-request-id')).toBeTruthy();
    const { error } = (await response.json()) as { error: { type: string; message: string } };
    expect(error.type).toBe('method_not_allowed');
  });

  it('answers HEAD on a POST-only chat route with 405 and no body', async () => {
    const response = await call('HEAD', '/v1/chat');
    expect(response.status).toBe(405);
    expect(allowOf(response)).toEqual(['POST']);
    expect(await response.text()).toBe('');
  });

  it('asks for a key first, as on every other route', async () => {
    expect((await call('GET', '/v1/chat', {})).status).toBe(401);
    expect((await call('DELETE', '/v1/models', {})).status).toBe(401);
  });

  it('still answers 404 for a path no method takes', async () => {
    const response = await call('GET', '/v1/chats');
    expect(response.status).toBe(404);
    expect(response.headers.get('allow')).toBeNull();
    expect(((await response.json()) as { error: { type: string } }).error.type).toBe('not_found_error');
  });

  it('serves the right method on the same paths as before', async () => {
    expect((await call('GET', '/v1/models')).status).toBe(200);
    const chat = await fetch(`${ocular.url}/v1/chat`, { method: 'POST', headers: ocular.headers, body: '{}' });
    expect(chat.status).toBe(400);
  });
});
