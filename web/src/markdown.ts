// Model output is untrusted: Markdown is rendered by marked and every bit of HTML goes through DOMPurify.
import DOMPurify from 'dompurify';
import { marked } from 'marked';

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

// Raw HTML in an answer is shown as text, not rendered: a model has no business writing markup into the page.
// DOMPurify below is the second guard.
marked.use({
  renderer: {
    html: ({ text }) => text.replace(/[&<>"']/g, (character) => ESCAPES[character]!),
  },
});

// Links open in a new tab and never pass the opener or referrer along.
DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
});

/** Safe HTML for `markdown`. */
export function markdownToHtml(markdown: string): string {
  const html = marked.parse(markdown, { async: false, gfm: true, breaks: true });
  return DOMPurify.sanitize(html, { FORBID_TAGS: ['style', 'form', 'input', 'button'], FORBID_ATTR: ['style'] });
}

/** Replaces `element`'s content with `markdown` rendered. */
export function renderMarkdown(element: HTMLElement, markdown: string): void {
  element.innerHTML = markdownToHtml(markdown);
}
