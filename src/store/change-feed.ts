import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * "Something changed" notices between processes: the worker indexing a video tells every API process streaming
 * its events to read the new state now, instead of at their next poll. A notice carries a topic only
 * (`video:<id>`, `clip:<id>`); the state itself is read from the database, so a lost notice costs a poll's delay,
 * never a wrong answer.
 */
export interface ChangeFeed {
  /** Tells every process (this one included) that `topic` changed. Never throws: a notice is a hint. */
  publish(topic: string): void;
  /** Calls `listener` each time `topic` changes, in any process; returns the unsubscribe function. */
  subscribe(topic: string, listener: () => void): () => void;
  close(): Promise<void>;
}

/** Topics are ids we made; anything longer than this is not one and is not sent. */
const MAX_TOPIC_LENGTH = 200;

/** Notices within this process only: the default, for one process on SQLite. */
export class LocalChangeFeed implements ChangeFeed {
  readonly #emitter = new EventEmitter().setMaxListeners(0);

  publish(topic: string): void {
    this.#emitter.emit(topic);
  }

  subscribe(topic: string, listener: () => void): () => void {
    this.#emitter.on(topic, listener);
    return () => this.#emitter.off(topic, listener);
  }

  /** Delivers a notice that came from another process. */
  deliver(topic: string): void {
    this.#emitter.emit(topic);
  }

  async close(): Promise<void> {
    this.#emitter.removeAllListeners();
  }
}

/** The PostgreSQL channel notices go on. */
const CHANNEL = 'ocular_changes';
/** The wait before listening again after the listening connection broke. */
const RECONNECT_MS = 1_000;

/**
 * Notices through PostgreSQL's LISTEN/NOTIFY: one listening connection per process (reopened when it breaks),
 * NOTIFY through the pool. Every process on the same database hears every notice.
 */
export class PostgresChangeFeed implements ChangeFeed {
  readonly #local = new LocalChangeFeed();
  readonly #pool: pg.Pool;
  readonly #connectionString: string;
  #listener: pg.Client | undefined;
  #closed = false;
  #retry: NodeJS.Timeout | undefined;

  private constructor(pool: pg.Pool, connectionString: string) {
    this.#pool = pool;
    this.#connectionString = connectionString;
  }

  /** Opens the listening connection; resolves once notices are being received. */
  static async open(pool: pg.Pool, connectionString: string): Promise<PostgresChangeFeed> {
    const feed = new PostgresChangeFeed(pool, connectionString);
    await feed.#listen();
    return feed;
  }

  async #listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#connectionString });
    client.on('notification', (message) => {
      if (message.channel === CHANNEL && message.payload) this.#local.deliver(message.payload);
    });
    client.on('error', () => this.#reconnect(client));
    client.on('end', () => this.#reconnect(client));
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    if (this.#closed) {
      await client.end();
      return;
    }
    this.#listener = client;
  }

  #reconnect(broken: pg.Client): void {
    if (this.#closed || this.#listener !== broken) return;
    this.#listener = undefined;
    broken.end().catch(() => undefined);
    const attempt = (): void => {
      this.#retry = undefined;
      if (this.#closed) return;
      this.#listen().catch(() => {
        this.#retry = setTimeout(attempt, RECONNECT_MS);
        this.#retry.unref();
      });
    };
    this.#retry = setTimeout(attempt, RECONNECT_MS);
    this.#retry.unref();
  }

  publish(topic: string): void {
    if (topic.length > MAX_TOPIC_LENGTH || this.#closed) return;
    // This process hears its own NOTIFY as well; no local delivery here, or listeners would be told twice.
    this.#pool.query('SELECT pg_notify($1, $2)', [CHANNEL, topic]).catch(() => this.#local.deliver(topic));
  }

  subscribe(topic: string, listener: () => void): () => void {
    return this.#local.subscribe(topic, listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.#local.close();
  }
}

/** Notices through Redis pub/sub, for deployments whose database is SQLite per machine but share a Redis. */
export class RedisChangeFeed implements ChangeFeed {
  readonly #local = new LocalChangeFeed();
  readonly #publisher: Redis;
  readonly #subscriber: Redis;
  readonly #channel: string;

  private constructor(url: string, prefix: string) {
    this.#channel = `${prefix}:changes`;
    this.#publisher = new Redis(url, { maxRetriesPerRequest: 1 });
    this.#subscriber = new Redis(url);
    for (const client of [this.#publisher, this.#subscriber]) client.on('error', () => undefined); // reconnects by itself
    this.#subscriber.on('message', (channel: string, topic: string) => {
      if (channel === this.#channel) this.#local.deliver(topic);
    });
  }

  static async open(url: string, prefix: string): Promise<RedisChangeFeed> {
    const feed = new RedisChangeFeed(url, prefix);
    await feed.#subscriber.subscribe(feed.#channel);
    return feed;
  }

  publish(topic: string): void {
    if (topic.length > MAX_TOPIC_LENGTH) return;
    this.#publisher.publish(this.#channel, topic).catch(() => this.#local.deliver(topic));
  }

  subscribe(topic: string, listener: () => void): () => void {
    return this.#local.subscribe(topic, listener);
  }

  async close(): Promise<void> {
    this.#subscriber.disconnect();
    this.#publisher.disconnect();
    await this.#local.close();
  }
}
