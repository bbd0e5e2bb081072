import { describe, expect, it, vi } from 'vitest';
import { ModelLifecycle, TaskQueue, type ModelLifecycleOptions } from '../../src/perception/model-lifecycle.ts';
import { isOcularError } from '../../src/spec/errors.ts';

/** A promise settled from outside, to hold a load or a task at a chosen point. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: Error) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((resolvePromise, rejectPromise) => {
    resolve = resolvePromise;
    reject = rejectPromise;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise callback run (timers run after the microtask queue is empty). */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

/** Whether `promise` has settled by now. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await settle();
  return settled;
}

interface Model {
  id: number;
}

function lifecycle(options: Partial<ModelLifecycleOptions<Model>> = {}) {
  let loads = 0;
  const load = vi.fn(async (): Promise<Model> => ({ id: ++loads }));
  const release = vi.fn(async (_model: Model): Promise<void> => {});
  return { load, release, models: new ModelLifecycle<Model>({ name: 'test model', load, release, ...options }) };
}

const rejection = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => expect.fail('expected a rejection'),
    (error: unknown) => error,
  );

describe('ModelLifecycle', () => {
  it('loads once for concurrent first calls, and not before the first call', async () => {
    const { load, models } = lifecycle();
    expect(load).not.toHaveBeenCalled();
    const ids = await Promise.all([1, 2, 3].map(() => models.use(async (model) => model.id)));
    expect(ids).toEqual([1, 1, 1]);
    expect(await models.use(async (model) => model.id)).toBe(1);
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('shares a failed load with the calls waiting on it, and loads again on the next call', async () => {
    const failure = new Error('no weights yet');
    const load = vi.fn<() => Promise<Model>>().mockRejectedValueOnce(failure).mockResolvedValue({ id: 2 });
    const { models } = lifecycle({ load });
    const first = await Promise.allSettled([models.use(async (model) => model.id), models.use(async (model) => model.id)]);
    expect(first).toEqual([
      { status: 'rejected', reason: failure },
      { status: 'rejected', reason: failure },
    ]);
    expect(await models.use(async (model) => model.id)).toBe(2);
    expect(load).toHaveBeenCalledTimes(2);
  });

  it('closes after the running calls end, then releases the model once', async () => {
    const { release, models } = lifecycle();
    const hold = deferred();
    let signalSeen: AbortSignal | undefined;
    const running = models.use(async (model, signal) => {
      signalSeen = signal;
      await hold.promise;
      return model.id;
    });
    await settle();
    const closed = models.close();
    // The running call is told (its signal aborts with the shut-down error) but not cut short.
    expect(signalSeen?.aborted).toBe(true);
    expect(isOcularError(signalSeen?.reason) && signalSeen.reason.type).toBe('unavailable_error');
    expect(await isSettled(closed)).toBe(false);
    // A second close waits as well.
    expect(await isSettled(models.close())).toBe(false);
    expect(release).not.toHaveBeenCalled();
    hold.resolve();
    expect(await running).toBe(1);
    await closed;
    expect(release).toHaveBeenCalledTimes(1);
    expect(release).toHaveBeenCalledWith({ id: 1 });
    await models.close();
    expect(release).toHaveBeenCalledTimes(1);
  });

  it('turns calls away with unavailable_error once closed, without loading', async () => {
    const { load, release, models } = lifecycle();
    await models.close();
    const task = vi.fn(async () => 'ran');
    const error = await rejection(models.use(task));
    expect(isOcularError(error) && error.type).toBe('unavailable_error');
    expect((error as Error).message).toContain('test model');
    expect(task).not.toHaveBeenCalled();
    expect(load).not.toHaveBeenCalled();
    expect(release).not.toHaveBeenCalled();
  });

  it('releases a model whose load was still under way at close, though its caller had left', async () => {
    const loading = deferred<Model>();
    const { release, models } = lifecycle({ load: () => loading.promise });
    const controller = new AbortController();
    const call = models.use(async (model) => model.id, controller.signal);
    controller.abort(new Error('gave up'));
    expect(await rejection(call)).toEqual(new Error('gave up'));
    const closed = models.close();
    expect(await isSettled(closed)).toBe(false);
    loading.resolve({ id: 7 });
    await closed;
    expect(release).toHaveBeenCalledWith({ id: 7 });
  });

  it('rejects with the signal’s reason when the signal is already aborted, and goes on working', async () => {
    const { models } = lifecycle();
    const reason = new Error('too late');
    expect(await rejection(models.use(async () => 'ran', AbortSignal.abort(reason)))).toBe(reason);
    expect(await models.use(async (model) => model.id)).toBe(1);
  });
});

describe('ModelLifecycle with a queue', () => {
  it('runs calls one at a time, in order', async () => {
    const { models } = lifecycle({ queue: new TaskQueue() });
    const order: string[] = [];
    let active = 0;
    const call = (name: string) =>
      models.use(async () => {
        active += 1;
        expect(active).toBe(1);
        order.push(`start ${name}`);
        await settle();
        order.push(`end ${name}`);
        active -= 1;
      });
    await Promise.all([call('a'), call('b'), call('c')]);
    expect(order).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('lets a waiting caller leave at once with its signal’s reason, and the line go on', async () => {
    const { models } = lifecycle({ queue: new TaskQueue() });
    const hold = deferred();
    const running = models.use(async () => {
      await hold.promise;
      return 'first';
    });
    const controller = new AbortController();
    const waitingTask = vi.fn(async () => 'second');
    const waiting = models.use(waitingTask, controller.signal);
    const after = models.use(async () => 'third');
    const reason = new Error('left the line');
    controller.abort(reason);
    // Rejected while the first call still runs.
    expect(await rejection(waiting)).toBe(reason);
    expect(waitingTask).not.toHaveBeenCalled();
    hold.resolve();
    expect(await running).toBe('first');
    expect(await after).toBe('third');
  });

  it('turns waiting callers away at close with unavailable_error, while the running one finishes', async () => {
    const { release, models } = lifecycle({ queue: new TaskQueue() });
    const hold = deferred();
    const running = models.use(async () => {
      await hold.promise;
      return 'first';
    });
    const waiting = models.use(async () => 'second');
    await settle();
    const closed = models.close();
    const error = await rejection(waiting);
    expect(isOcularError(error) && error.type).toBe('unavailable_error');
    expect(release).not.toHaveBeenCalled();
    hold.resolve();
    expect(await running).toBe('first');
    await closed;
    expect(release).toHaveBeenCalledTimes(1);
  });

  it('makes lifecycles that share a queue take turns with each other', async () => {
    const queue = new TaskQueue();
    const [one, two] = [lifecycle({ queue }).models, lifecycle({ queue }).models];
    let active = 0;
    let most = 0;
    const task = async (): Promise<void> => {
      active += 1;
      most = Math.max(most, active);
      await settle();
      active -= 1;
    };
    await Promise.all([one.use(task), two.use(task), one.use(task), two.use(task)]);
    expect(most).toBe(1);
    // `idle` waits for what is in line when it is asked.
    const hold = deferred();
    const held = one.use(() => hold.promise);
    const idle = queue.idle();
    expect(await isSettled(idle)).toBe(false);
    hold.resolve();
    await held;
    await idle;
  });
});
