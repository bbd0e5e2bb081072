/**
 * The picture of a search by image (`image_url`): a data: URL is decoded, an http(s) URL is fetched by the media
 * fetcher (private addresses refused, size and time capped), and either is sniffed and decoded by the media
 * pipeline like a chat image, so a non-image, a corrupt file or a decompression bomb is a clear 4xx.
 */
import { decodeDataUrl, isDataUrl } from '../media/data-url.ts';
import type { MediaFetcher } from '../media/fetch-media.ts';
import { normalizeImage } from '../media/image.ts';
import { Scratch } from '../media/scratch.ts';
import { assertKind, sniffBuffer, sniffFile } from '../media/sniff.ts';
import { OcularError, validationError } from '../spec/errors.ts';

export interface QueryImageOptions {
  fetcher: MediaFetcher;
  /** Largest picture, fetched or decoded from a data: URL (`media.maxBytes`). */
  maxBytes: number;
  /** Longest side it is scaled to (`media.maxImageSide`): the model reads a few hundred pixels at most. */
  maxSide: number;
  /** Most pixels it may decode to (`media.maxImagePixels`). */
  maxPixels: number;
}

/** Loads a query picture: its normalised bytes (JPEG or PNG). Errors name `label` as their `param`. */
export type QueryImageLoader = (url: string, label: string, signal: AbortSignal) => Promise<Buffer>;

export function createQueryImageLoader(options: QueryImageOptions): QueryImageLoader {
  const { fetcher, maxBytes, maxSide, maxPixels } = options;
  return async (url, label, signal) => {
    const scratch = await Scratch.create();
    try {
      let input: Buffer | string;
      if (isDataUrl(url)) {
        const decoded = decodeDataUrl(url, { maxBytes, label });
        if (decoded.type !== 'bytes') throw validationError(`${label}: send one picture, not a list of frames`, label);
        input = decoded.data;
      } else {
        let parsed: URL | undefined;
        try {
          parsed = new URL(url);
        } catch {
          // reported below
        }
        if (parsed?.protocol !== 'http:' && parsed?.protocol !== 'https:') {
          throw validationError(`${label}: expected an http(s) URL or a data: URL`, label);
        }
        input = (await fetcher.fetch(url, label, scratch, signal)).path;
      }
      const sniffed = typeof input === 'string' ? await sniffFile(input) : await sniffBuffer(input);
      assertKind(sniffed, 'image', label);
      const image = await normalizeImage(input, { maxSide, maxPixels, label });
      return image.data;
    } catch (error) {
      if (error instanceof OcularError && error.param === undefined) {
        throw new OcularError(error.type, `${label}: ${error.message}`, { param: label, cause: error });
      }
      throw error;
    } finally {
      await scratch.dispose();
    }
  };
}
