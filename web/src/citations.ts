// `[mm:ss]` and `[h:mm:ss]` citations in answers about a video, turned into links that seek the player.

/** `[1:05]`, `[01:05]`, `[1:02:03]`, also a range `[0:10-0:15]` (the link seeks to its start). */
const CITATION = /\[(\d{1,2}:)?(\d{1,2}):(\d{2})(?:\s*[-–]\s*(?:\d{1,2}:)?\d{1,2}:\d{2})?\]/g;

/** Seconds of a citation's start: `1:02:03` is 3723. */
export function citationSeconds(hours: string | undefined, minutes: string, seconds: string): number {
  return (hours === undefined ? 0 : Number(hours.slice(0, -1)) * 3600) + Number(minutes) * 60 + Number(seconds);
}

export interface Citation {
  /** Offset and length in the text. */
  index: number;
  length: number;
  text: string;
  seconds: number;
}

export function findCitations(text: string): Citation[] {
  const found: Citation[] = [];
  for (const match of text.matchAll(CITATION)) {
    const [whole, hours, minutes = '0', seconds = '0'] = match;
    if (Number(seconds) >= 60) continue;
    found.push({ index: match.index, length: whole.length, text: whole, seconds: citationSeconds(hours, minutes, seconds) });
  }
  return found;
}

/**
 * Wraps each citation in the text under `root` (rendered, sanitized Markdown) in a link whose click calls
 * `seek`. Text inside code and existing links is left alone.
 */
export function linkCitations(root: HTMLElement, seek: (seconds: number) => void): void {
  const walker = root.ownerDocument.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.parentElement?.closest('a, code, pre') ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const nodes: Text[] = [];
  for (let node = walker.nextNode(); node !== null; node = walker.nextNode()) nodes.push(node as Text);
  for (const node of nodes) {
    const text = node.data;
    const citations = findCitations(text);
    if (citations.length === 0) continue;
    const fragment = root.ownerDocument.createDocumentFragment();
    let at = 0;
    for (const citation of citations) {
      fragment.append(text.slice(at, citation.index));
      const link = root.ownerDocument.createElement('a');
      link.href = '#';
      link.className = 'citation';
      link.textContent = citation.text;
      link.dataset.seconds = String(citation.seconds);
      link.addEventListener('click', (event) => {
        event.preventDefault();
        seek(citation.seconds);
      });
      fragment.append(link);
      at = citation.index + citation.length;
    }
    fragment.append(text.slice(at));
    node.replaceWith(fragment);
  }
}

/** `65.2` as `1:05`, `3723` as `1:02:03`. */
export function formatTime(totalSeconds: number): string {
  const whole = Math.max(0, Math.floor(totalSeconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const seconds = String(whole % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}
