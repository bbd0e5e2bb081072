/** The API reference as one self-contained HTML page (no scripts, no outside assets), rendered from the OpenAPI document. */

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!);

/** Inline `code` spans of the summaries and descriptions, after escaping. */
const inlineCode = (text: string): string => escapeHtml(text).replace(/`([^`]+)`/g, '<code>$1</code>');

interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown }>;
  requestBody?: { content?: Record<string, { schema?: unknown }> };
  responses?: Record<string, { description?: string; $ref?: string }>;
  security?: unknown[];
}

/** Content Security Policy of the page: it loads nothing and runs nothing. */
export const DOCS_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function renderDocsPage(document: Record<string, unknown>): string {
  const info = document.info as { title: string; version: string; description?: string };
  const paths = document.paths as Record<string, Record<string, Operation>>;
  const byTag = new Map<string, string[]>();
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const tag = operation.tags?.[0] ?? 'Other';
      const sections = byTag.get(tag) ?? [];
      sections.push(renderOperation(method, path, operation));
      byTag.set(tag, sections);
    }
  }
  const toc = [...byTag.keys()].map((tag) => `<a href="#${escapeHtml(slug(tag))}">${escapeHtml(tag)}</a>`).join(' · ');
  const body = [...byTag.entries()]
    .map(([tag, sections]) => `<h2 id="${escapeHtml(slug(tag))}">${escapeHtml(tag)}</h2>\n${sections.join('\n')}`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(info.title)} reference</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}
code,pre{font:13px/1.4 ui-monospace,monospace}pre{background:#f5f5f7;padding:.75rem;overflow:auto;border-radius:6px;max-height:24rem}
details{border:1px solid #ddd;border-radius:6px;margin:.5rem 0;padding:.25rem .75rem}summary{cursor:pointer}
.m{display:inline-block;min-width:4.5rem;font-weight:600}.get{color:#0a7}.post{color:#06c}.patch{color:#a60}.delete{color:#c22}
table{border-collapse:collapse}td,th{border-bottom:1px solid #eee;padding:.2rem .6rem;text-align:left;vertical-align:top}
</style></head><body>
<h1>${escapeHtml(info.title)} <small>${escapeHtml(info.version)}</small></h1>
<p>${inlineCode(info.description ?? '')} Authenticate with <code>X-Api-Key: KEY</code> or <code>Authorization: Bearer KEY</code>.
Errors are <code>{"error":{"type","message","param"}}</code>. The machine-readable document is <a href="openapi.json">/openapi.json</a>.</p>
<nav>${toc}</nav>
${body}
</body></html>
`;
}

const slug = (text: string): string => text.toLowerCase().replace(/[^a-z0-9]+/g, '-');

function renderOperation(method: string, path: string, operation: Operation): string {
  const parts: string[] = [];
  if (operation.description) parts.push(`<p>${inlineCode(operation.description)}</p>`);
  if (operation.security !== undefined && operation.security.length === 0)
    parts.push('<p>No API key: public, or authorised by its signed URL.</p>');
  if (operation.parameters?.length) {
    const rows = operation.parameters
      .map(
        (parameter) =>
          `<tr><td><code>${escapeHtml(parameter.name)}</code></td><td>${escapeHtml(parameter.in)}</td><td>${parameter.required ? 'required' : ''}</td><td><code>${escapeHtml(JSON.stringify(parameter.schema ?? {}))}</code></td></tr>`,
      )
      .join('');
    parts.push(`<table><tr><th>Parameter</th><th>In</th><th></th><th>Schema</th></tr>${rows}</table>`);
  }
  for (const [type, media] of Object.entries(operation.requestBody?.content ?? {})) {
    parts.push(`<p>Body (<code>${escapeHtml(type)}</code>):</p><pre>${escapeHtml(JSON.stringify(media.schema ?? {}, null, 2))}</pre>`);
  }
  const responses = Object.entries(operation.responses ?? {})
    .map(
      ([status, response]) =>
        `<li><code>${escapeHtml(status)}</code> ${inlineCode(response.description ?? (response.$ref ?? '').replace(/^.*\/Error/, 'error '))}</li>`,
    )
    .join('');
  parts.push(`<ul>${responses}</ul>`);
  return `<details><summary><span class="m ${escapeHtml(method)}">${escapeHtml(method.toUpperCase())}</span> <code>${escapeHtml(path)}</code> — ${inlineCode(operation.summary ?? '')}</summary>\n${parts.join('\n')}</details>`;
}
