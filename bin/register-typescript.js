// Lets this thread import Ocular's TypeScript sources (see typescript-hooks.js). Import it before the first .ts
// import: in each entry point, and in each worker thread's entry (hooks registered in the main thread do not
// reach workers on Node 20).
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./typescript-hooks.js', import.meta.url);
