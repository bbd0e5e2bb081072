#!/usr/bin/env node
// The `ocular` command. Node >= 22.19 runs the TypeScript sources by stripping their types, so `npx ocular` needs
// no build step and no loader. An older Node cannot read them: say so plainly rather than fail on a `.ts` file.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(
    `ocular: needs Node.js 22.19 or newer (this is ${process.version}); install a current Node.js (24 LTS) and run it again\n`,
  );
  process.exit(1);
}
await import('../src/cli/main.ts');
