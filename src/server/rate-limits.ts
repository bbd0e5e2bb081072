import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { RateLimitSettings } from '../config/schema.ts';
import { OcularError } from '../spec/errors.ts';

const SECONDS_PER_DAY = 86_400;

/** Seconds until the next UTC midnight, when a day's token quota starts again. */
function secondsToUtcMidnight(now = Date.now()): number {
  return Math.max(1, Math.ceil((SECONDS_PER_DAY * 1000 - (now % (SECONDS_PER_DAY * 1000))) / 1000));
}

const utcDay = (now = Date.now()): string => new Date(now).toISOString().slice(0, 10);

/** Headers a client reads its allowance from (OpenAI's names). */
export type RateLimitHeaders = Record<string, string>;

/**
 * Per-key rate limits (requests per minute) and quotas (model tokens per UTC day), counted in this process or in
 * Redis (shared by every process that uses it). Keys are owners: a key is its own owner unless it was created to
 * share one. When Redis cannot be reached, counting goes on in memory (rate-limiter-flexible's insurance limiter),
 * so an outage of the counter is not an outage of the API.
 */
export class RateLimits {
  readonly #requests: RateLimiterAbstract | undefined;
  readonly #tokens: RateLimiterAbstract | undefined;
  readonly #settings: RateLimitSettings;
  readonly #redis: Redis | undefined;

  private constructor(settings: RateLimitSettings) {
    this.#settings = settings;
    const { requestsPerMinute, tokensPerDay } = settings;
    if (settings.store === 'redis') {
      // No offline queue: a command while Redis is down fails at once and the insurance limiter answers.
      this.#redis = new Redis(settings.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
      this.#redis.on('error', () => undefined); // reconnects by itself; each failed command falls back to memory
    }
    const make = (points: number, duration: number, name: string): RateLimiterAbstract => {
      const insurance = new RateLimiterMemory({ points, duration, keyPrefix: name });
      if (this.#redis === undefined) return insurance;
      return new RateLimiterRedis({
        storeClient: this.#redis,
        points,
        duration,
        keyPrefix: `${settings.redisPrefix}:${name}`,
        insuranceLimiter: insurance,
      });
    };
    this.#requests = requestsPerMinute === undefined ? undefined : make(requestsPerMinute, 60, 'requests');
    // Keyed by owner and UTC day, kept a little longer than a day.
    this.#tokens = tokensPerDay === undefined ? undefined : make(tokensPerDay, SECONDS_PER_DAY + 3600, 'tokens');
  }

  /** Undefined when no limit is configured. */
  static create(settings: RateLimitSettings): RateLimits | undefined {
    return settings.requestsPerMinute === undefined && settings.tokensPerDay === undefined ? undefined : new RateLimits(settings);
  }

  /** Whether chat routes should count tokens. */
  get countsTokens(): boolean {
    return this.#tokens !== undefined;
  }

  /**
   * Counts one request of `owner`. Returns the headers to send; throws 429 (`rate_limit_error` with Retry-After)
   * when the minute's requests are spent, after `setHeaders` has been given the headers (the refusal carries them too).
   */
  async admitRequest(owner: string, setHeaders: (headers: RateLimitHeaders) => void): Promise<void> {
    const limiter = this.#requests;
    if (limiter === undefined) return;
    const limit = this.#settings.requestsPerMinute!;
    let result: RateLimiterRes;
    let refused = false;
    try {
      result = await limiter.consume(owner, 1);
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      result = error;
      refused = true;
    }
    const resetSeconds = Math.max(1, Math.ceil(result.msBeforeNext / 1000));
    setHeaders({
      'x-ratelimit-limit-requests': String(limit),
      'x-ratelimit-remaining-requests': String(Math.max(0, result.remainingPoints)),
      'x-ratelimit-reset-requests': `${resetSeconds}s`,
    });
    if (refused) {
      throw new OcularError('rate_limit_error', `this key is limited to ${limit} requests per minute (rateLimits.requestsPerMinute)`, {
        retryAfterSeconds: resetSeconds,
      });
    }
  }

  /** Refuses (429) a chat call of `owner` when the day's tokens are spent; sets the tokens headers either way. */
  async checkTokens(owner: string, setHeaders: (headers: RateLimitHeaders) => void): Promise<void> {
    const limiter = this.#tokens;
    if (limiter === undefined) return;
    const quota = this.#settings.tokensPerDay!;
    const used = (await limiter.get(`${owner}:${utcDay()}`))?.consumedPoints ?? 0;
    const resetSeconds = secondsToUtcMidnight();
    setHeaders({
      'x-ratelimit-limit-tokens': String(quota),
      'x-ratelimit-remaining-tokens': String(Math.max(0, quota - used)),
      'x-ratelimit-reset-tokens': `${resetSeconds}s`,
    });
    if (used >= quota) {
      throw new OcularError(
        'rate_limit_error',
        `this key has used its ${quota} tokens for today (rateLimits.tokensPerDay); the quota renews at 00:00 UTC`,
        {
          retryAfterSeconds: resetSeconds,
        },
      );
    }
  }

  /** Adds a finished answer's tokens to `owner`'s day (an answer that starts within the quota is not cut short). */
  async spendTokens(owner: string, tokens: number): Promise<void> {
    if (this.#tokens === undefined || tokens <= 0) return;
    await this.#tokens.penalty(`${owner}:${utcDay()}`, tokens);
  }

  /** Checks the shared counter (Redis) answers; nothing to check for the memory store. */
  async ping(): Promise<void> {
    if (this.#redis !== undefined) await this.#redis.ping();
  }

  /** Whether the counts are shared through Redis (a readiness check then covers it). */
  get shared(): boolean {
    return this.#redis !== undefined;
  }

  async close(): Promise<void> {
    this.#redis?.disconnect();
  }
}
