import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

// Request bodies that fail their schema answer 400 validation_error naming the field (`param`) and saying what
// was expected and what came, in Ocular's words rather than the validator's.

let ocular: TestOcular;

beforeAll(async () => {
  ocular = await startOcular({});
});

afterAll(async () => {
  await ocular.close();
});

const user = (content: unknown) => ({ messages: [{ role: 'user', content }] });

const cases: Array<[string, string, unknown, string]> = [
  ['/v1/chat', 'a missing field', {}, 'messages'],
  ['/v1/chat', 'a wrong type', { ...user('hi'), max_tokens: 'many' }, 'max_tokens'],
  ['/v1/chat', 'a number out of range', { ...user('hi'), temperature: 9 }, 'temperature'],
  ['/v1/chat', 'an unknown role', { messages: [{ role: 'bot', content: 'hi' }] }, 'messages.0.role'],
  ['/v1/chat', 'an unknown content part type', user([{ type: 'img', url: 'x' }]), 'messages.0.content.0.type'],
  ['/v1/chat', 'a part without its field', user([{ type: 'image_url' }]), 'messages.0.content.0.image_url'],
  ['/v1/chat', 'content neither string nor parts', user(5), 'messages.0.content'],
  ['/v1/chat', 'a value not among the options', { ...user('hi'), tool_choice: 'always' }, 'tool_choice'],
  ['/openai/v1/chat/completions', 'a fraction where an integer goes', { ...user('hi'), max_tokens: 1.5 }, 'max_tokens'],
  [
    '/openai/v1/chat/completions',
    'a nested enum',
    user([{ type: 'input_audio', input_audio: { data: 'x', format: 'aac' } }]),
    'messages.0.content.0.input_audio.format',
  ],
  ['/v1/videos/groups', 'an empty string', { name: '' }, 'name'],
  ['/v1/videos/groups', 'an unknown field of a strict body', { name: 'launch', colour: 'red' }, 'colour'],
];

describe('validation errors', () => {
  it.each(cases)('%s: %s names the field, what was expected and what came', async (path, _, body, param) => {
    const response = await ocular.post(path, body);
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { type: string; message: string; param?: string } };
    expect(error.type).toBe('validation_error');
    expect(error.param).toBe(param);
    expect(error.message.startsWith(`${param}: `)).toBe(true);
    // The validator's own phrasing ("Invalid input: expected string, received undefined") never reaches the client.
    expect(error.message).not.toMatch(/Invalid input|received|Too (?:small|big)|Unrecognized/);
  });

  it('keeps the messages the schemas set themselves', async () => {
    const response = await ocular.post('/v1/videos/groups', { name: 'launch', webhook_secret: 'short' });
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { type: string; message: string; param?: string } };
    expect(error).toMatchObject({ type: 'validation_error', param: 'webhook_secret' });
    expect(error.message).toContain('16 characters');
  });
});
