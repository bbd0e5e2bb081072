import type { QueueSettings } from '../config/schema.ts';
import type { Db } from '../store/database.ts';
import { BullmqJobQueue } from './bullmq-queue.ts';
import { SqliteJobQueue, type WorkerQueue } from './job-queue.ts';

/** The queue the config's `queue` names: the SQLite jobs table (in `db`), or BullMQ on Redis. */
export function openJobQueue(settings: QueueSettings, db: Db): WorkerQueue {
  return settings.kind === 'redis' ? new BullmqJobQueue({ url: settings.url, prefix: settings.prefix }) : new SqliteJobQueue(db);
}
