import { fileTypeFromBuffer, fileTypeFromFile } from 'file-type';
import { OcularError } from '../spec/errors.ts';
import type { MediaKind } from '../spec/messages.ts';

/** What the bytes of a media part are, judged from their magic numbers alone. */
export interface SniffedMedia {
  /** IANA media type without parameters, e.g. `image/png`, `audio/mp4`. */
  mediaType: string;
  kind: MediaKind;
}

/**
 * The formats Ocular accepts, keyed by the MIME type file-type reports, with the media type we hand on.
 * Anything else (BMP, PSD, ZIP, text, ...) sniffs as `undefined`.
 *
 * Limits of sniffing by magic numbers, which callers must live with:
 * - MP4-family files are classified by their `ftyp` major brand. `M4A `/`M4B `/`F4A ` brands are audio;
 *   everything else (`isom`, `mp42`, ...) is reported as `video/mp4` even when it holds only audio.
 * - WebM and Matroska are reported as video whatever their tracks: file-type reads the EBML DocType only.
 *   `assertKind` therefore accepts these containers where audio was declared (see AUDIO_CAPABLE_CONTAINERS);
 *   whether an audio stream really is inside is for ffprobe to say.
 * - MP3 without an ID3 tag is recognised only when a frame header starts at byte 0.
 * - Images are limited to what sharp's prebuilt libvips decodes. HEIC sniffs as an image, but decoding it
 *   needs an HEVC decoder that the prebuilt lacks; `normalizeImage` says so.
 */
const ACCEPTED: ReadonlyMap<string, SniffedMedia> = new Map(
  (
    [
      ['image/jpeg', 'image/jpeg', 'image'],
      ['image/png', 'image/png', 'image'],
      ['image/apng', 'image/apng', 'image'],
      ['image/gif', 'image/gif', 'image'],
      ['image/webp', 'image/webp', 'image'],
      ['image/tiff', 'image/tiff', 'image'],
      ['image/avif', 'image/avif', 'image'],
      ['image/heic', 'image/heic', 'image'],
      ['image/heif', 'image/heif', 'image'],
      ['video/mp4', 'video/mp4', 'video'],
      // Apple's M4V is MP4 with an extra brand; providers know it as video/mp4.
      ['video/x-m4v', 'video/mp4', 'video'],
      ['video/webm', 'video/webm', 'video'],
      ['video/matroska', 'video/matroska', 'video'],
      ['video/quicktime', 'video/quicktime', 'video'],
      ['video/vnd.avi', 'video/vnd.avi', 'video'],
      ['video/mpeg', 'video/mpeg', 'video'],
      // file-type's names for MPEG-1/MPEG-2 program streams, which are what `.mpg` files are.
      ['video/MP1S', 'video/mpeg', 'video'],
      ['video/MP2P', 'video/mpeg', 'video'],
      ['audio/wav', 'audio/wav', 'audio'],
      ['audio/mpeg', 'audio/mpeg', 'audio'],
      ['audio/flac', 'audio/flac', 'audio'],
      ['audio/ogg', 'audio/ogg', 'audio'],
      ['audio/ogg; codecs=opus', 'audio/ogg', 'audio'],
      ['audio/x-m4a', 'audio/mp4', 'audio'],
      ['audio/mp4', 'audio/mp4', 'audio'],
      ['audio/aac', 'audio/aac', 'audio'],
      ['application/pdf', 'application/pdf', 'pdf'],
    ] as const
  ).map(([detected, mediaType, kind]) => [detected, { mediaType, kind }]),
);

/** Containers that sniff as video but may carry audio alone, with the media type to use when they do. */
const AUDIO_CAPABLE_CONTAINERS: Readonly<Record<string, string>> = {
  'video/mp4': 'audio/mp4',
  'video/webm': 'audio/webm',
  'video/matroska': 'audio/matroska',
};

function classify(detected: { mime: string } | undefined): SniffedMedia | undefined {
  const found = detected === undefined ? undefined : ACCEPTED.get(detected.mime);
  return found === undefined ? undefined : { ...found };
}

/** Sniffs a file on disk; reads only the few bytes file-type needs, never the whole file. */
export async function sniffFile(path: string): Promise<SniffedMedia | undefined> {
  return classify(await fileTypeFromFile(path));
}

export async function sniffBuffer(buffer: Uint8Array): Promise<SniffedMedia | undefined> {
  return classify(await fileTypeFromBuffer(buffer));
}

const KIND_NAMES: Readonly<Record<MediaKind, string>> = { image: 'an image', video: 'a video', audio: 'audio', pdf: 'a PDF' };

/**
 * Checks that the bytes are the kind of media the client declared (`image_url` must hold an image, ...).
 * Returns the sniffed media, re-labelled as audio where an audio part arrived in a container that sniffs
 * as video (`video/mp4` -> `audio/mp4`). Throws `unsupported_media_type` on a mismatch or unknown bytes.
 * @param label the request field, as a dotted path (`messages.0.content.1`)
 */
export function assertKind(sniffed: SniffedMedia | undefined, declaredKind: MediaKind, label: string): SniffedMedia {
  if (sniffed === undefined) {
    throw new OcularError(
      'unsupported_media_type',
      `${label} was declared as ${KIND_NAMES[declaredKind]}, but its bytes are not an image, video, audio or PDF format Ocular accepts`,
      { param: label },
    );
  }
  if (sniffed.kind === declaredKind) return sniffed;
  const asAudio = declaredKind === 'audio' ? AUDIO_CAPABLE_CONTAINERS[sniffed.mediaType] : undefined;
  if (asAudio !== undefined) return { mediaType: asAudio, kind: 'audio' };
  throw new OcularError(
    'unsupported_media_type',
    `${label} was declared as ${KIND_NAMES[declaredKind]}, but its bytes are ${KIND_NAMES[sniffed.kind]} (${sniffed.mediaType})`,
    { param: label },
  );
}
