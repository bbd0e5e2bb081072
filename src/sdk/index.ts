// `ocular/client`: the TypeScript client of Ocular's HTTP API. Zero dependencies beyond the platform's fetch;
// runs in Node (>= 20), Deno, Bun and browsers.
export { Ocular, Ocular as default, DEFAULT_BASE_URL, type ClientOptions, type Fetch, type RequestOptions } from './client.ts';
export { ChatStream } from './chat-stream.ts';
export {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ClipGenerationError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  OcularError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  UnprocessableEntityError,
  VideoIndexingError,
} from './errors.ts';
export { parseServerSentEvents, type ServerSentEvent } from './sse.ts';
export type { Uploadable, UploadProgress } from './uploads.ts';
export type { ImageUploadItem, ImageUploadParams } from './resources/images.ts';
export { QaChatStream, type QaChatParams, type QaChatResponse } from './resources/qa.ts';
export type {
  Clip,
  ClipCreateParams,
  ClipGenerationConfig,
  ClipMoment,
  ClipOutput,
  ClipProgressEvent,
  ClipRenderingConfig,
  ClipStatus,
  WaitUntilDoneOptions,
} from './resources/clips.ts';
export {
  ConversationStream,
  type Asset,
  type AssetUploadParams,
  type AssistantMessage,
  type Conversation,
  type ConversationCreateParams,
  type ConversationSendParams,
  type ConversationSendResponse,
  type ConversationStreamResult,
  type ConversationWithMessages,
  type Memory,
  type UserMessage,
  type WebSource,
} from './resources/conversations.ts';
export type { SpeechTranscribeParams, SpeechTranscribeResponse, TimedTranscript } from './resources/speech.ts';
export type { VideoUploadParams, WaitUntilIndexedOptions } from './resources/videos.ts';
export type * from './types.ts';
