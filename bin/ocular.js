#!/usr/bin/env node
// The `ocular` command: loads the TypeScript sources through tsx, so `npx ocular` works without a build.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
