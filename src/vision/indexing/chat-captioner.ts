import type { ChatService } from '../../chat/chat-service.ts';
import type { AnalyzerImage } from '../../perception/analyzers.ts';
import type { CaptionContext, Captioner } from './analyzers.ts';

/** Keyframes sent per caption request: enough to see what changes, few enough for small local models. */
const MAX_IMAGES = 4;
const MAX_CAPTION_TOKENS = 120;

const RULES = 'Do not guess names, places or intentions; mention on-screen text only if it is legible. Automatic detectors reported: ';
const INSTRUCTIONS = {
  segment:
    'These are frames from one segment of a video, in order. Write one or two short, factual sentences describing ' +
    'what is visible and happening. ' +
    RULES,
  image: 'Write one or two short, factual sentences describing what is visible in this image. ' + RULES,
} as const;

function pickFrames(images: readonly AnalyzerImage[]): AnalyzerImage[] {
  if (images.length <= MAX_IMAGES) return [...images];
  const step = (images.length - 1) / (MAX_IMAGES - 1);
  return Array.from({ length: MAX_IMAGES }, (_, index) => images[Math.round(index * step)]!);
}

/** Captions through any configured chat model with image input, via the chat service (so limits and media handling apply). */
export function createChatCaptioner(chat: ChatService, model: string): Captioner {
  return {
    async caption(images: readonly AnalyzerImage[], context: CaptionContext, signal: AbortSignal): Promise<string> {
      const result = await chat.generate(
        {
          model,
          maxTokens: MAX_CAPTION_TOKENS,
          temperature: 0,
          messages: [
            {
              role: 'user',
              content: [
                ...pickFrames(images).map((image) => ({
                  type: 'media' as const,
                  kind: 'image' as const,
                  url: `data:image/jpeg;base64,${image.data.toString('base64')}`,
                })),
                { type: 'text' as const, text: INSTRUCTIONS[context.subject ?? 'segment'] + context.findings },
              ],
            },
          ],
        },
        signal,
      );
      const caption = result.text.replace(/\s+/g, ' ').trim();
      return caption === '' ? context.findings : caption;
    },
  };
}
