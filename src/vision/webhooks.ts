import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { JobQueue } from '../jobs/job-queue.ts';
import { PermanentJobError, type JobHandler } from '../jobs/job-runner.ts';
import { isOcularError } from '../spec/errors.ts';
import type { MediaFetcher } from '../media/fetch-media.ts';
import type { GroupRecord, VideoRecord } from '../store/video-store.ts';

/** The job kind that delivers one webhook call; retried with backoff by the job runner. */
export const WEBHOOK_JOB = 'webhook.deliver';

export const WEBHOOK_SECRET_FILE = 'webhook-secret';

/** The header carrying `sha256=<hex HMAC-SHA256 of the raw body>`. */
export const SIGNATURE_HEADER = 'x-ocular-signature';

export type WebhookEvent = 'video.indexed' | 'video.failed';

const payloadSchema = z.object({ url: z.string(), secret: z.string(), event: z.string(), body: z.string() });

/** `sha256=` + hex HMAC of the body: what receivers recompute with their copy of the secret. */
export function signWebhookBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** The server-wide secret: config `vision.webhookSecret`, else a random one kept in `<data>/webhook-secret` (0600). */
export function loadOrCreateWebhookSecret(dataDir: string, configured: string | undefined): string {
  if (configured !== undefined) return configured;
  const path = join(dataDir, WEBHOOK_SECRET_FILE);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const secret = randomBytes(32).toString('base64url');
  try {
    writeFileSync(path, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  } catch {
    return readFileSync(path, 'utf8').trim(); // another process created it first
  }
  chmodSync(path, 0o600);
  return secret;
}

export interface WebhookNotifierOptions {
  jobs: JobQueue;
  /** Used when neither the upload nor its group names a secret. */
  defaultSecret: string;
  maxAttempts: number;
}

/** Queues the signed calls that tell a video's (or its group's) webhook that indexing ended. */
export class WebhookNotifier {
  readonly #options: WebhookNotifierOptions;

  constructor(options: WebhookNotifierOptions) {
    this.#options = options;
  }

  /** The upload's own webhook wins over its group's; nothing is sent when neither has one. */
  async notify(video: VideoRecord, group: GroupRecord | undefined, event: WebhookEvent): Promise<void> {
    const url = video.webhookUrl ?? group?.webhookUrl ?? null;
    if (url === null) return;
    const secret = (video.webhookUrl !== null ? video.webhookSecret : group?.webhookSecret) ?? this.#options.defaultSecret;
    const body = JSON.stringify({
      event,
      video_id: video.id,
      video_name: video.name,
      group_id: video.groupId,
      indexing_status: video.status,
      ...(video.error === null ? {} : { error: video.error }),
      timestamp: new Date().toISOString(),
    });
    await this.#options.jobs.enqueue(WEBHOOK_JOB, { url, secret, event, body }, { maxAttempts: this.#options.maxAttempts });
  }
}

/** Delivers one queued webhook call; a non-2xx answer or a network failure throws, so the runner retries it. */
export function createWebhookHandler(fetcher: MediaFetcher): JobHandler {
  return async (job, { signal }) => {
    const payload = payloadSchema.parse(job.payload);
    const status = await post(payload, job.id, signal);
    if (status >= 200 && status <= 299) return;
    // The receiver refused this call itself (not a passing failure): sending it again would be refused too.
    if (status >= 400 && status <= 499 && status !== 408 && status !== 429)
      throw new PermanentJobError(`the webhook answered HTTP ${status}`);
    throw new Error(`the webhook answered HTTP ${status}`);
  };

  async function post(payload: z.infer<typeof payloadSchema>, deliveryId: string, signal: AbortSignal): Promise<number> {
    try {
      return await fetcher.post(
        payload.url,
        payload.body,
        {
          'content-type': 'application/json',
          [SIGNATURE_HEADER]: signWebhookBody(payload.body, payload.secret),
          'x-ocular-event': payload.event,
          'x-ocular-delivery': deliveryId,
        },
        'webhook_url',
        signal,
      );
    } catch (error) {
      // A URL the address policy refuses stays refused; timeouts and network failures are worth another try.
      if (isOcularError(error) && !error.retryable) {
        throw new PermanentJobError(error.message, { cause: error });
      }
      throw error;
    }
  }
}
