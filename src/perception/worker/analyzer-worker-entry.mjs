// The entry file of an analyzer worker thread. There is no build step, and loader hooks registered in the main
// thread (bin/ocular.js, vitest's own transform) do not reach a worker, nor does `--import tsx` in `execArgv`
// on Node 20; registering tsx here, before the first TypeScript import, does.
import { register } from 'tsx/esm/api';

register();
await import('./analyzer-worker.ts');
