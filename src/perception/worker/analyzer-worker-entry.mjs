// The entry file of an analyzer worker thread. There is no build step, and loader hooks registered in the main
// thread (bin/ocular.js, vitest's own transform) do not reach a worker, nor does `--import` in `execArgv` on
// Node 20; registering them here, before the first TypeScript import, does.
import '../../../bin/register-typescript.js';
await import('./analyzer-worker.ts');
