import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createParser } from 'eventsource-parser';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamProgress, type ProgressFeed } from '../../src/server/progress-stream.ts';

interface State {
  progress: number;
}

/**
 * A feed driven by the test: `emit` is an in-process report, `notify` another process's change-feed notice, and
 * each read of the state (`current`) waits until the test answers it with `answerRead`.
 */
class ScriptedFeed implements ProgressFeed<State> {
  readonly #listeners = new Set<(event: State) => void>();
  readonly #notices = new Set<() => void>();
  readonly #reads: Array<(state: State) => void> = [];
  #readArrived: (() => void) | undefined;
  #settled: State | undefined;

  subscribe(listener: (event: State) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  changes(notice: () => void): () => void {
    this.#notices.add(notice);
    return () => this.#notices.delete(notice);
  }
  current(): Promise<State> {
    if (this.#settled !== undefined) return Promise.resolve(this.#settled);
    return new Promise((resolve) => {
      this.#reads.push(resolve);
      this.#readArrived?.();
    });
  }
  follows(): boolean {
    return true;
  }
  isLast(event: State): boolean {
    return event.progress >= 1;
  }
  toWire(event: State): unknown {
    return { progress: event.progress };
  }

  emit(state: State): void {
    for (const listener of this.#listeners) listener(state);
  }
  notify(): void {
    for (const notice of this.#notices) notice();
  }
  /** Waits for the stream's next read of the state and answers it with `state`. */
  async answerRead(state: State): Promise<void> {
    while (this.#reads.length === 0) await new Promise<void>((resolve) => (this.#readArrived = resolve));
    this.#reads.shift()!(state);
  }
  /** From now on every read (those waiting too) answers `state` at once: the script is over. */
  settle(state: State): void {
    this.#settled = state;
    for (const read of this.#reads.splice(0)) read(state);
  }
  /** Waits for the stream to start a read, leaving it unanswered. */
  async readStarted(): Promise<void> {
    while (this.#reads.length === 0) await new Promise<void>((resolve) => (this.#readArrived = resolve));
  }
}

let feed: ScriptedFeed;
let server: Server;
let url: string;

beforeAll(async () => {
  const app = new Hono();
  app.get('/events', (c) => streamProgress(c, feed));
  server = await new Promise<Server>((resolve) => {
    const instance = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(instance as Server));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** Opens the stream; `events` fills as they arrive, `ended` resolves when the server ends it. */
async function open(): Promise<{ events: Array<{ event: string; progress: number }>; ended: Promise<void> }> {
  const events: Array<{ event: string; progress: number }> = [];
  const response = await fetch(url);
  const parser = createParser({
    onEvent: (event) => events.push({ event: event.event ?? 'message', progress: (JSON.parse(event.data) as State).progress }),
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const ended = (async () => {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
      parser.feed(decoder.decode(chunk.value, { stream: true }));
  })();
  return { events, ended };
}

describe('streamProgress', () => {
  it('never goes backwards when a report arrives while a read of the state is under way', async () => {
    feed = new ScriptedFeed();
    const streamed = open();
    await feed.answerRead({ progress: 0.1 }); // the state sent first

    // Another process's notice starts a read; a newer report from this process arrives before it answers, and the
    // read then answers with a state older than that report (read before the report was written).
    feed.notify();
    await feed.readStarted();
    feed.emit({ progress: 0.5 });
    await feed.answerRead({ progress: 0.3 });
    feed.emit({ progress: 1 });
    feed.settle({ progress: 1 }); // a read the 1 s poll may have started meanwhile

    const { events, ended } = await streamed;
    await ended;
    expect(events).toEqual([
      { event: 'progress', progress: 0.1 },
      { event: 'progress', progress: 0.5 },
      { event: 'progress', progress: 1 },
      { event: 'done', progress: 1 },
    ]);
  });

  it('sends a state once when it is both reported here and read back after the change feed’s notice', async () => {
    feed = new ScriptedFeed();
    const streamed = open();
    await feed.answerRead({ progress: 0.1 });

    feed.notify();
    await feed.readStarted();
    await feed.answerRead({ progress: 0.4 }); // another process's progress, read from the store
    feed.emit({ progress: 0.4 }); // the same state, reported in this process as well
    feed.emit({ progress: 1 });
    feed.settle({ progress: 1 }); // a read the 1 s poll may have started meanwhile

    const { events, ended } = await streamed;
    await ended;
    expect(events.map((event) => event.progress)).toEqual([0.1, 0.4, 1, 1]);
  });
});
