import type { HubSettings } from '../config/settings.ts';

/** `{endpoint}/{repo}/resolve/main/{file}`, the download URL the Hugging Face hub (and its mirrors) serve. */
export function hubFileUrl(hub: Pick<HubSettings, 'endpoint'>, repo: string, file: string): string {
  const path = [...repo.split('/'), 'resolve', 'main', ...file.split('/')].map(encodeURIComponent).join('/');
  return `${hub.endpoint.replace(/\/+$/, '')}/${path}`;
}

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * What the hub says about a file before sending it. For LFS/Xet files the resolve endpoint answers with
 * `X-Linked-Etag: "<sha256>"` and `X-Linked-Size` (on the redirect to its CDN), or with an `ETag` holding the
 * sha256 when it serves the bytes itself. Small git-stored files carry a git blob sha1 instead (40 hex digits),
 * which is not a content checksum and is ignored.
 */
export function readHubChecksum(headers: Pick<Headers, 'get'>): { sha256: string | undefined; size: number | undefined } {
  const unquote = (value: string | null) => value?.replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
  const etag = unquote(headers.get('x-linked-etag')) ?? unquote(headers.get('etag'));
  const sizeText = headers.get('x-linked-size');
  const size = sizeText !== null && /^\d+$/.test(sizeText) ? Number(sizeText) : undefined;
  return { sha256: etag !== undefined && SHA256.test(etag) ? etag : undefined, size };
}
