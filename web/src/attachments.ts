// Files attached to a chat message travel inside the JSON request as data: URLs (Reka content parts).

export type AttachmentKind = 'image' | 'video' | 'audio' | 'pdf';

export interface Attachment {
  kind: AttachmentKind;
  name: string;
  size: number;
  /** `data:<type>;base64,...` */
  url: string;
}

const MIB = 1024 * 1024;
/**
 * Base64 makes a file a third larger, and the whole conversation (with every earlier attachment) is sent again
 * each turn, while the server takes at most `limits.maxRequestBytes` (50 MiB by default) per request and
 * `media.maxBytes` (100 MB) per item. These keep a conversation inside the defaults.
 */
export const MAX_FILE_BYTES = 20 * MIB;
export const MAX_CONVERSATION_BYTES = 32 * MIB;
/** `limits.maxMediaPerTurn`'s default. */
export const MAX_FILES_PER_MESSAGE = 6;

/** The Reka content part type for each kind. */
export const PART_TYPES = { image: 'image_url', video: 'video_url', audio: 'audio_url', pdf: 'pdf_url' } as const satisfies Record<
  AttachmentKind,
  string
>;

export function kindOf(file: { type: string; name: string }): AttachmentKind | undefined {
  if (file.type === 'application/pdf' || /\.pdf$/i.test(file.name)) return 'pdf';
  const major = file.type.split('/')[0];
  if (major === 'image' || major === 'video' || major === 'audio') return major;
  return undefined;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

/**
 * Why `file` cannot be attached (type, size, count, the conversation's total), or undefined when it can.
 * `alreadySent` counts the bytes of attachments earlier in the conversation and in this message.
 */
export function refusal(file: File, pendingCount: number, alreadySent: number): string | undefined {
  if (kindOf(file) === undefined) return `${file.name}: only images, videos, audio and PDFs can be attached`;
  if (file.size > MAX_FILE_BYTES)
    return `${file.name} is ${formatBytes(file.size)}; attachments are limited to ${formatBytes(MAX_FILE_BYTES)}`;
  if (pendingCount >= MAX_FILES_PER_MESSAGE) return `at most ${MAX_FILES_PER_MESSAGE} files per message`;
  if (alreadySent + file.size > MAX_CONVERSATION_BYTES) {
    return `${file.name} would take this conversation's attachments past ${formatBytes(MAX_CONVERSATION_BYTES)}; start a new chat`;
  }
  return undefined;
}

export function readAttachment(file: File): Promise<Attachment> {
  const kind = kindOf(file)!;
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener('load', () => {
      let url = reader.result as string;
      // Some browsers give no type for .pdf files picked from disk.
      if (kind === 'pdf' && url.startsWith('data:;')) url = `data:application/pdf;${url.slice(6)}`;
      resolve({ kind, name: file.name, size: file.size, url });
    });
    reader.addEventListener('error', () => reject(new Error(`${file.name} could not be read`)));
    reader.readAsDataURL(file);
  });
}
