#!/usr/bin/env node
// The `ocular` command: loads the TypeScript sources directly (bin/register-typescript.js), so `npx ocular` works without a build.
import './register-typescript.js';

await import('../src/cli/main.ts');
