import type { QueueSettings } from '../config/schema.ts';
import type { SqlDatabase } from '../store/sql.ts';
import { BullmqJobQueue } from './bullmq-queue.ts';
import { SqlJobQueue, type WorkerQueue } from './job-queue.ts';

/** The queue the config's `queue` names: the jobs table of the metadata database (SQLite or PostgreSQL), or BullMQ on Redis. */
export function openJobQueue(settings: QueueSettings, database: SqlDatabase): WorkerQueue {
  return settings.kind === 'redis' ? new BullmqJobQueue({ url: settings.url, prefix: settings.prefix }) : new SqlJobQueue(database);
}
