#!/usr/bin/env node
// The `ocular` command. Node >= 22.18 runs the TypeScript sources by stripping their types, so `npx ocular` needs
// no build step and no loader.
await import('../src/cli/main.ts');
