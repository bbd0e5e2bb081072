import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';

/** How often an idle event stream sends a comment, so proxies keep it open. */
const SSE_KEEPALIVE_MS = 15_000;
/**
 * How often an idle stream reads the state again: work done by another process (a `--role worker`) is reported
 * there, not here, and reaches the database only.
 */
const POLL_MS = 1_000;

/** The progress of one piece of background work (indexing a video, rendering clips), as an event stream shows it. */
export interface ProgressFeed<Event> {
  /** Calls `listener` with each event from now on; returns the unsubscribe. */
  subscribe(listener: (event: Event) => void): () => void;
  /** The state now, sent first (after subscribing), so a client that connects late learns where the work is. */
  current(): Event | Promise<Event>;
  /** Whether more events can follow the current state (false: `done` follows at once). */
  follows(current: Event): boolean;
  /** Whether an event is the last one. */
  isLast(event: Event): boolean;
  toWire(event: Event): unknown;
  /** Whether two states differ (to tell a change another process made). @default their wire forms differ */
  same?(a: Event, b: Event): boolean;
  /**
   * Calls `notice` when another process says the state changed (a change feed), so the stream reads it at once
   * instead of at its next poll; returns the unsubscribe.
   */
  changes?(notice: () => void): () => void;
}

/**
 * `progress` events (the current state, then each change) and a final `done` with the last state, as SSE. Ends
 * when the work ends, or when the client goes away; a comment every 15 s keeps idle proxies from closing it.
 */
export function streamProgress<Event>(c: Context, feed: ProgressFeed<Event>): Response {
  return streamSSE(c, async (stream) => {
    const queue: Event[] = [];
    let wake: (() => void) | undefined;
    let noticed = false;
    let arrived = 0;
    const unsubscribe = feed.subscribe((event) => {
      queue.push(event);
      arrived += 1;
      wake?.();
    });
    const unsubscribeChanges = feed.changes?.(() => {
      noticed = true;
      wake?.();
    });
    let closed = false;
    stream.onAbort(() => {
      closed = true;
      wake?.();
    });
    try {
      let last: Event = await feed.current();
      await stream.writeSSE({ event: 'progress', data: JSON.stringify(feed.toWire(last)) });
      let following = feed.follows(last);
      const same = feed.same ?? ((a: Event, b: Event) => JSON.stringify(feed.toWire(a)) === JSON.stringify(feed.toWire(b)));
      let quietSince = Date.now();
      while (following && !closed) {
        const next = queue.shift();
        if (next === undefined) {
          if (!noticed) {
            await new Promise<void>((resolve) => {
              wake = resolve;
              setTimeout(resolve, POLL_MS).unref();
            });
          }
          wake = undefined;
          noticed = false;
          if (queue.length > 0 || closed) continue;
          const before = arrived;
          const now = await feed.current();
          // An event that came while the state was being read is newer than what the read may have returned:
          // queued after it, that read would take the stream backwards.
          if (arrived !== before) continue;
          if (!same(now, last)) queue.push(now);
          else if (Date.now() - quietSince >= SSE_KEEPALIVE_MS) {
            quietSince = Date.now();
            await stream.write(': keep-alive\n\n');
          }
          continue;
        }
        quietSince = Date.now();
        if (same(next, last)) continue; // told twice (here, and read back after the change feed's notice)
        last = next;
        await stream.writeSSE({ event: 'progress', data: JSON.stringify(feed.toWire(next)) });
        following = !feed.isLast(next);
      }
      if (!closed) await stream.writeSSE({ event: 'done', data: JSON.stringify(feed.toWire(last)) });
    } catch {
      // The client went away, or the work's subject was deleted: nothing to tell anyone.
    } finally {
      unsubscribe();
      unsubscribeChanges?.();
    }
  });
}
