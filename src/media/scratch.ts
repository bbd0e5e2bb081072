import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A private temporary directory for one request's media (downloads, extracted frames, converted audio).
 * Everything in it is removed by `dispose()`, which callers run in a `finally`.
 */
export class Scratch {
  readonly dir: string;
  #counter = 0;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** @param root where to create the directory. @default the OS temp directory */
  static async create(root: string = tmpdir()): Promise<Scratch> {
    return new Scratch(await mkdtemp(join(root, 'ocular-media-')));
  }

  /** A fresh path inside the directory; `extension` includes the dot (`.jpg`). */
  path(extension = ''): string {
    this.#counter += 1;
    return join(this.dir, `${this.#counter}${extension}`);
  }

  async dispose(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
