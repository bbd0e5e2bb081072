// The Research API: a chat model that plans, searches the web (`search_web`), reads pages (`analyze`) and answers
// with citations, on the chat service and the web search client that conversations use. No second way of calling
// a model: every step is a ChatService call with tools.
import type { ChatService } from '../chat/chat-service.ts';
import type { WebSearch } from '../conversations/web-search.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { ChatMessage, ToolCall, Usage } from '../spec/messages.ts';

/** One research model, as configured under `research`. */
export interface ResearchModel {
  id: string;
  /** The chat model that plans, reads and answers. */
  model: string;
  maxSteps: number;
  maxSeconds: number;
  maxPages: number;
}

export interface ResearchRequest {
  messages: ChatMessage[];
  maxTokens: number;
  temperature?: number | undefined;
  webSearch: { maxUses?: number | undefined; allowedDomains?: string[] | undefined; blockedDomains?: string[] | undefined };
  /** Independent attempts before a synthesis (none: 1, low: 2, high: 3). */
  attempts: number;
}

/** One step of the research, in Reka Research's shape. */
export type ResearchStep =
  | { role: 'assistant'; reasoning_content: string; tool_calls: Array<{ id: string; name: string; args: unknown }> }
  | { role: 'tool'; tool_call_id: string; content: { tool_name: string; tool_output: string | null; tool_error: string | null } };

export interface UrlCitation {
  type: 'url_citation';
  url_citation: { url: string; title: string; start_index: number; end_index: number };
}

export interface ResearchResult {
  content: string;
  reasoningContent: string;
  steps: ResearchStep[];
  annotations: UrlCitation[];
  usage: Usage;
}

interface Source {
  index: number;
  url: string;
  title: string;
}

const TOOLS = [
  {
    name: 'search_web',
    description: 'Searches the web. Returns numbered sources [n] with their URL and the start of their text.',
    parameters: {
      type: 'object',
      properties: { query: { type: 'string', description: 'What to search for' } },
      required: ['query'],
      additionalProperties: false,
    },
  },
  {
    name: 'analyze',
    description: 'Reads one web page (a URL from search_web) and answers a question about it from its text.',
    parameters: {
      type: 'object',
      properties: { url: { type: 'string' }, question: { type: 'string' } },
      required: ['url', 'question'],
      additionalProperties: false,
    },
  },
];

const SYSTEM_PROMPT =
  'You are a research assistant. Use the tools to find and read sources on the web before answering: search_web to ' +
  'find pages, analyze to read one. Every source has a number [n]. Answer the question in the end without tools, ' +
  'citing each fact with the number of its source right after the sentence, like "Paris is the capital of France [1]." ' +
  'Cite only sources you were given.';

/** Words of a search result given to the model; `analyze` reads the page itself. */
const SNIPPET_WORDS = 80;
const RESULTS_PER_SEARCH = 5;
/** Characters of a page given to the model that answers a question about it. */
const PAGE_CHARS = 12_000;

/** Whether `host` is `domain` or one of its subdomains. */
export function hostMatches(host: string, domain: string): boolean {
  const bare = domain.toLowerCase().replace(/^\.+|\.+$/g, '');
  const name = host.toLowerCase();
  return name === bare || name.endsWith(`.${bare}`);
}

function allowedUrl(url: string, filter: ResearchRequest['webSearch']): boolean {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return false;
  }
  if (filter.allowedDomains?.length) return filter.allowedDomains.some((domain) => hostMatches(host, domain));
  if (filter.blockedDomains?.length) return !filter.blockedDomains.some((domain) => hostMatches(host, domain));
  return true;
}

const addUsage = (a: Usage, b: Usage): Usage => ({
  inputTokens: a.inputTokens + b.inputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
});

/** The number a source is cited by: its number when already found, else the next one (shared by every attempt). */
function sourceNumber(sources: Map<number, Source>, url: string, title: string): number {
  for (const known of sources.values()) if (known.url === url) return known.index;
  const index = sources.size + 1;
  sources.set(index, { index, url, title });
  return index;
}

/** `[n]` markers in `content`, each with the sentence it ends (the cited text) as the annotation's range. */
export function citationsIn(content: string, sources: ReadonlyMap<number, Source>): UrlCitation[] {
  const annotations: UrlCitation[] = [];
  for (const match of content.matchAll(/\[(\d{1,4})\]/g)) {
    const source = sources.get(Number(match[1]));
    if (source === undefined) continue;
    const markerStart = match.index;
    // The cited text: from the end of the previous sentence (or citation, or line) up to the marker.
    let start = markerStart;
    while (start > 0 && !/[.!?\n\]]/.test(content[start - 1]!)) start -= 1;
    while (start < markerStart && /\s/.test(content[start]!)) start += 1;
    let end = markerStart;
    while (end > start && /\s/.test(content[end - 1]!)) end -= 1;
    if (end <= start) continue;
    annotations.push({ type: 'url_citation', url_citation: { url: source.url, title: source.title, start_index: start, end_index: end } });
  }
  return annotations;
}

export interface ResearchAgentOptions {
  chat: ChatService;
  search: WebSearch | undefined;
  howToConfigureSearch: string;
}

/** Runs research requests for the configured research models. */
export class ResearchAgent {
  readonly #options: ResearchAgentOptions;
  readonly #models: ReadonlyMap<string, ResearchModel>;

  constructor(options: ResearchAgentOptions, models: readonly ResearchModel[]) {
    this.#options = options;
    this.#models = new Map(models.map((model) => [model.id, model]));
  }

  get modelNames(): string[] {
    return [...this.#models.keys()];
  }

  has(id: string | undefined): boolean {
    return id !== undefined && this.#models.has(id);
  }

  /**
   * Researches and answers. `onStep` hears each step as it happens (for streaming). Bounded by the model's
   * `maxSteps`, `maxSeconds`, `maxPages` and the request's `max_uses`; at a bound the model is asked to answer
   * with what it has.
   */
  async run(id: string, request: ResearchRequest, signal: AbortSignal, onStep?: (step: ResearchStep) => void): Promise<ResearchResult> {
    const model = this.#models.get(id);
    if (model === undefined) throw new OcularError('not_found_error', `unknown research model "${id}"`, { param: 'model' });
    const search = this.#options.search;
    if (search === undefined) throw validationError(this.#options.howToConfigureSearch, 'model');
    const deadline = AbortSignal.timeout(model.maxSeconds * 1000);
    const sources = new Map<number, Source>();
    const budget = { searches: request.webSearch.maxUses ?? Number.POSITIVE_INFINITY, pages: model.maxPages };
    const attempts = await Promise.all(
      Array.from({ length: request.attempts }, () => this.#attempt(model, request, search, sources, budget, signal, deadline, onStep)),
    );
    let usage = attempts.reduce((sum, attempt) => addUsage(sum, attempt.usage), { inputTokens: 0, outputTokens: 0 });
    const steps = attempts.flatMap((attempt) => attempt.steps);
    let content = attempts[0]!.content;
    let reasoningContent = attempts.map((attempt) => attempt.reasoning).join('\n\n');
    if (attempts.length > 1) {
      const synthesis = await this.#options.chat.generate(
        {
          model: model.model,
          maxTokens: request.maxTokens,
          temperature: request.temperature,
          messages: [
            { role: 'system', content: `${SYSTEM_PROMPT} Several researchers answered independently; write the one best answer.` },
            ...request.messages,
            {
              role: 'user',
              content: [
                {
                  type: 'text',
                  text:
                    attempts.map((attempt, index) => `Answer ${index + 1}:\n${attempt.content}`).join('\n\n') +
                    '\n\nCombine these answers into one, keeping their [n] citations.',
                },
              ],
            },
          ],
        },
        signal,
      );
      usage = addUsage(usage, synthesis.usage);
      reasoningContent += `\n\nSynthesis of ${attempts.length} attempts.`;
      content = synthesis.text;
    }
    return { content, reasoningContent: reasoningContent.trim(), steps, annotations: citationsIn(content, sources), usage };
  }

  async #attempt(
    model: ResearchModel,
    request: ResearchRequest,
    search: WebSearch,
    sources: Map<number, Source>,
    budget: { searches: number; pages: number },
    signal: AbortSignal,
    deadline: AbortSignal,
    onStep: ((step: ResearchStep) => void) | undefined,
  ): Promise<{ content: string; reasoning: string; steps: ResearchStep[]; usage: Usage }> {
    const { chat } = this.#options;
    const messages: ChatMessage[] = [{ role: 'system', content: SYSTEM_PROMPT }, ...request.messages];
    const steps: ResearchStep[] = [];
    const record = (step: ResearchStep): void => {
      steps.push(step);
      onStep?.(step);
    };
    const reasoning: string[] = [];
    let usage: Usage = { inputTokens: 0, outputTokens: 0 };
    for (let step = 0; ; step++) {
      const lastStep = step >= model.maxSteps || deadline.aborted;
      let answer;
      try {
        answer = await chat.generate(
          {
            model: model.model,
            maxTokens: request.maxTokens,
            temperature: request.temperature,
            messages,
            tools: TOOLS,
            toolChoice: lastStep ? 'none' : 'auto',
          },
          // The last answer is not held to the clock: it is what the time was spent for.
          lastStep ? signal : AbortSignal.any([signal, deadline]),
        );
      } catch (error) {
        // Out of time mid-step: answer from what was found, once, without the clock.
        if (deadline.aborted && !signal.aborted && !lastStep) {
          step = model.maxSteps;
          continue;
        }
        throw error;
      }
      usage = addUsage(usage, answer.usage);
      if (answer.toolCalls.length === 0 || lastStep) {
        return { content: answer.text, reasoning: reasoning.join('\n'), steps, usage };
      }
      if (answer.text.trim() !== '') reasoning.push(answer.text.trim());
      record({
        role: 'assistant',
        reasoning_content: answer.text,
        tool_calls: answer.toolCalls.map((call) => ({ id: call.id, name: call.name, args: call.arguments })),
      });
      messages.push({ role: 'assistant', content: answer.text, toolCalls: answer.toolCalls });
      for (const call of answer.toolCalls) {
        const { output, error } = await this.#runTool(call, model, request, search, sources, budget, AbortSignal.any([signal, deadline]));
        record({ role: 'tool', tool_call_id: call.id, content: { tool_name: call.name, tool_output: output, tool_error: error } });
        messages.push({ role: 'tool', toolCallId: call.id, content: error === null ? output! : `Error: ${error}` });
      }
    }
  }

  async #runTool(
    call: ToolCall,
    model: ResearchModel,
    request: ResearchRequest,
    search: WebSearch,
    sources: Map<number, Source>,
    budget: { searches: number; pages: number },
    signal: AbortSignal,
  ): Promise<{ output: string | null; error: string | null }> {
    const args = (call.arguments ?? {}) as Record<string, unknown>;
    try {
      if (call.name === 'search_web') {
        const query = typeof args.query === 'string' ? args.query.trim() : '';
        if (query === '') return { output: null, error: 'search_web needs a query' };
        if (budget.searches <= 0) return { output: null, error: 'no searches left (max_uses reached): answer with the sources you have' };
        budget.searches -= 1;
        const kept = await search.search(
          { query, numOfSite: RESULTS_PER_SEARCH, maxWord: SNIPPET_WORDS, acceptUrl: (url) => allowedUrl(url, request.webSearch) },
          signal,
        );
        if (kept.length === 0) return { output: 'No results.', error: null };
        const lines = kept.map(
          (source) => `[${sourceNumber(sources, source.url, source.title)}] ${source.title} (${source.url})\n${source.text}`,
        );
        return { output: lines.join('\n\n'), error: null };
      }
      if (call.name === 'analyze') {
        const url = typeof args.url === 'string' ? args.url.trim() : '';
        const question = typeof args.question === 'string' ? args.question.trim() : '';
        if (!/^https?:\/\//i.test(url) || question === '') return { output: null, error: 'analyze needs an http(s) url and a question' };
        if (!allowedUrl(url, request.webSearch)) return { output: null, error: `${new URL(url).hostname} is outside the allowed domains` };
        if (budget.pages <= 0) return { output: null, error: 'no more pages may be read: answer with what you have' };
        budget.pages -= 1;
        const page = await search.read(url, signal);
        if (page === undefined || page.text.trim() === '') return { output: null, error: `could not read ${url}` };
        const index = sourceNumber(sources, url, page.title || url);
        const answer = await this.#options.chat.generate(
          {
            maxTokens: 512,
            temperature: 0,
            model: model.model,
            messages: [
              { role: 'system', content: 'Answer the question from the page text only, briefly. Say so when the page does not answer it.' },
              {
                role: 'user',
                content: [
                  {
                    type: 'text',
                    text: `Page [${index}] ${page.title} (${url}):\n${page.text.slice(0, PAGE_CHARS)}\n\nQuestion: ${question}`,
                  },
                ],
              },
            ],
          },
          signal,
        );
        return { output: `[${index}] ${page.title || url} (${url}): ${answer.text}`, error: null };
      }
      return { output: null, error: `unknown tool "${call.name}"` };
    } catch (error) {
      // Out of time: the step fails and the next one answers; a client that went away ends everything.
      if (signal.aborted && (signal.reason as Error | undefined)?.name !== 'TimeoutError') throw error;
      return { output: null, error: signal.aborted ? 'out of time: answer with what you have' : (error as Error).message };
    }
  }
}
