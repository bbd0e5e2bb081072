import { z } from 'zod';
import type { ChatService } from '../chat/chat-service.ts';
import { formatClock, type MomentCandidate } from './clip-moments.ts';

/** Candidates shown to the model: the search's best; the rest keep their search order behind its picks. */
const MAX_CANDIDATES = 20;
/** Characters of index text per candidate, to keep the prompt inside small models' context. */
const MAX_TEXT = 300;
const MAX_TOKENS = 600;

/** The model's answer, checked before anything is taken from it. */
const pickSchema = z.object({
  moments: z
    .array(z.object({ candidate: z.int().min(0), title: z.string().trim().min(1).max(120) }))
    .min(1)
    .max(MAX_CANDIDATES),
});

/** The first JSON object in a reply (models wrap it in prose or code fences). */
function extractJson(text: string): unknown {
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start === -1 || end <= start) return undefined;
  try {
    return JSON.parse(text.slice(start, end + 1)) as unknown;
  } catch {
    return undefined;
  }
}

function describe(candidate: MomentCandidate, index: number): string {
  const text = candidate.text.replace(/\s+/g, ' ').trim();
  const shown = text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}...` : text;
  return `[${index}] ${formatClock(candidate.startSeconds)}-${formatClock(candidate.endSeconds)}: ${shown === '' ? '(no text)' : shown}`;
}

export type ModelPickOutcome = { ok: true; candidates: MomentCandidate[] } | { ok: false; reason: string };

/**
 * Asks the model (through the chat service, like every model call) which candidates fit the prompt best and
 * how to title them. Its picks come first, in its order, with its titles; the other candidates follow in
 * search order, so the duration rules can still fill the outputs. An answer that does not parse, names no
 * candidate, or a failed call is reported, and the caller keeps the search ranking.
 */
export async function pickWithModel(
  chat: ChatService,
  model: string,
  prompt: string,
  candidates: readonly MomentCandidate[],
  wanted: number,
  signal: AbortSignal,
): Promise<ModelPickOutcome> {
  const shown = candidates.slice(0, MAX_CANDIDATES);
  if (shown.length === 0) return { ok: false, reason: 'no candidates' };
  let text: string;
  try {
    const result = await chat.generate(
      {
        model,
        maxTokens: MAX_TOKENS,
        temperature: 0,
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'text',
                text:
                  `You choose moments of videos for short clips. The request: "${prompt}".\n` +
                  `Candidate moments (index, time range, what the video shows and says):\n${shown.map(describe).join('\n')}\n\n` +
                  `Pick up to ${Math.max(wanted, 1)} candidates that best match the request, best first, and give each a short title ` +
                  '(at most 8 words). Answer with JSON only: {"moments":[{"candidate":<index>,"title":"<title>"}]}',
              },
            ],
          },
        ],
      },
      signal,
    );
    text = result.text;
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    return { ok: false, reason: `the model call failed: ${(error as Error).message}` };
  }
  const parsed = pickSchema.safeParse(extractJson(text));
  if (!parsed.success) return { ok: false, reason: 'the model did not answer with the JSON asked for' };
  const picked: MomentCandidate[] = [];
  const seen = new Set<number>();
  for (const { candidate, title } of parsed.data.moments) {
    const chosen = shown[candidate];
    if (chosen === undefined || seen.has(candidate)) continue;
    seen.add(candidate);
    picked.push({ ...chosen, title });
  }
  if (picked.length === 0) return { ok: false, reason: 'the model named no listed candidate' };
  return { ok: true, candidates: [...picked, ...candidates.filter((_, index) => !seen.has(index))] };
}
