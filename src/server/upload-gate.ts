import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { OcularError } from '../spec/errors.ts';

/** What a client turned away by `limits.maxConcurrentUploads` is told to wait. */
const RETRY_AFTER_SECONDS = 5;

type NodeBindings = { incoming?: IncomingMessage } | undefined;

/**
 * Bounds the multipart uploads in progress at once across every route that takes one (videos, images, assets,
 * quicktag, audio): each holds files on disk and maybe a download or a decode. A request over the bound is refused
 * with 429 before any of its body is read.
 */
export class UploadGate {
  readonly #max: number;
  #inFlight = 0;

  /** @param max `limits.maxConcurrentUploads` */
  constructor(max: number) {
    this.#max = max;
  }

  /** Runs `receive` on the request's Node stream, holding one place for as long as it runs. */
  async run<T>(c: Context, receive: (incoming: IncomingMessage) => Promise<T>): Promise<T> {
    const incoming = (c.env as NodeBindings)?.incoming;
    if (!incoming) throw new OcularError('server_error', 'uploads need the Node.js HTTP server');
    if (this.#inFlight >= this.#max) {
      c.header('Connection', 'close'); // the body is left unread
      throw new OcularError('rate_limit_error', `${this.#max} uploads are in progress (limits.maxConcurrentUploads); try again shortly`, {
        retryAfterSeconds: RETRY_AFTER_SECONDS,
      });
    }
    this.#inFlight += 1;
    try {
      return await receive(incoming);
    } finally {
      this.#inFlight -= 1;
    }
  }
}
