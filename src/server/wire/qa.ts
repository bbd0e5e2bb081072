import { z } from 'zod';
import type { QaMessage } from '../../vision/video-qa.ts';

// ---- video QA (`POST /v1/qa/chat`, Reka's Video QA request) ----

const textPart = z.looseObject({ type: z.literal('text'), text: z.string() });

/** Reka chat messages, text only: the video is the one media item, named by `video_id` or `video_url`. */
const qaMessageSchema = z.looseObject({
  role: z.enum(['system', 'user', 'assistant']),
  content: z
    .union([z.string(), z.array(textPart).min(1)])
    .transform((content) => (typeof content === 'string' ? content : content.map((part) => part.text).join('\n'))),
});

export const qaChatRequestSchema = z
  .looseObject({
    video_id: z.string().min(1).max(100).optional(),
    video_url: z
      .url({ protocol: /^https?$/ })
      .max(4096)
      .optional(),
    messages: z.array(qaMessageSchema).min(1),
    model: z.string().min(1).optional(),
    stream: z.boolean().optional(),
    /** Wait (bounded by `qa.maxWaitSeconds`) for indexing instead of answering 409. */
    wait: z.boolean().optional(),
    max_tokens: z.int().min(1).optional(),
    temperature: z.number().min(0).max(2).optional(),
  })
  .superRefine((body, context) => {
    if ((body.video_id === undefined) === (body.video_url === undefined)) {
      context.addIssue({
        code: 'custom',
        message: 'send exactly one of video_id or video_url',
        path: [body.video_id === undefined ? 'video_id' : 'video_url'],
      });
    }
  });

export type QaChatRequest = z.infer<typeof qaChatRequestSchema>;

export function toQaMessages(body: QaChatRequest): QaMessage[] {
  return body.messages.map((message) => ({ role: message.role, content: message.content }));
}

/** The answer, as Reka's Video QA returns it. */
export function toQaResponse(text: string): { chat_response: string; status: 'success' } {
  return { chat_response: text, status: 'success' };
}

// ---- quicktag (`POST /qa/quicktag`, multipart) ----

/** The multipart fields quicktag takes besides the `video` file. */
export const QUICKTAG_FIELD_NAMES = ['schema', 'model'] as const;

export const quicktagFieldsSchema = z.strictObject({
  /** A JSON Schema (as JSON text) replacing the default fields. */
  schema: z.string().min(2).optional(),
  model: z.string().min(1).optional(),
});
