import { OcularError, validationError } from '../../spec/errors.ts';
import type { MediaKind } from '../../spec/messages.ts';

/** How errors name a model: the id clients use, and the catalog name `ocular models pull` takes. */
export interface ModelLabel {
  id: string;
  pullName: string;
}

/** The model (or projector) file is not on disk: 503, since the model exists in config but cannot answer yet. */
export function missingFileError(what: 'model' | 'projector', path: string, label: ModelLabel): OcularError {
  return new OcularError(
    'unavailable_error',
    what === 'model'
      ? `model "${label.id}" is not available: its file ${path} does not exist; download it with ` +
          `"ocular models pull ${label.pullName}" or set "modelPath" to an existing GGUF file`
      : `model "${label.id}" is not available: its projector file ${path} does not exist; download it with ` +
          `"ocular models pull ${label.pullName}" or set "mmprojPath" to an existing mmproj GGUF file`,
  );
}

/** The file exists but llama.cpp cannot load it (truncated download, not a GGUF, unsupported architecture). */
export function loadFailedError(what: 'model' | 'projector', path: string, label: ModelLabel, detail: string): OcularError {
  const field = what === 'model' ? 'modelPath' : 'mmprojPath';
  return new OcularError(
    'unavailable_error',
    `model "${label.id}" could not be loaded from its ${what === 'model' ? 'model' : 'projector'} file ${path}: ${detail}; ` +
      `the file may be incomplete or not a GGUF ${what}: download it again with "ocular models pull ${label.pullName}" or fix "${field}"`,
  );
}

/** Messages a failed llama.cpp load leaves on stderr are noisy; these lines say what went wrong. */
const DIAGNOSTIC =
  /(GGML_ASSERT.*|error loading model: .*|gguf_init_from_\w+: .*|invalid .*|failed to read .*|not within the file bounds.*|unknown model architecture.*|terminate called .*|what\(\): .*)$/;
/** Lines that only repeat that loading failed. */
const GENERIC = /failed to load model|llama_model_loader: failed to load model from/;

/** The most specific reason in a failed load's log, or a description of how the process ended. */
export function describeLoadFailure(log: string, exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  const reasons: string[] = [];
  for (const line of log.split('\n')) {
    const match = DIAGNOSTIC.exec(line.trim());
    if (!match || GENERIC.test(match[1]!)) continue;
    const reason = match[1]!.replace(/^error loading model: /, '');
    if (!reasons.includes(reason)) reasons.push(reason);
    if (reasons.length === 2) break;
  }
  if (reasons.length > 0) return reasons.join('; ');
  return exit.signal === null ? `the loader exited with code ${exit.code}` : `the loader crashed (${exit.signal})`;
}

/** Media sent to a model that has no projector for it. */
export function mediaNotSupportedError(id: string, kind: MediaKind, param: string): OcularError {
  const reason =
    kind === 'image' || kind === 'audio'
      ? `it has no ${kind === 'image' ? 'vision' : 'audio'} projector (set "mmprojPath" to a matching mmproj GGUF)`
      : `the llama provider takes images and audio only`;
  return validationError(`model "${id}" does not accept ${kind} input: ${reason}`, param);
}

/** The prompt does not fit the context window, so nothing could be generated. */
export function contextOverflowError(name: string, promptTokens: number, contextSize: number): OcularError {
  return validationError(
    `the conversation is ${promptTokens} tokens, which does not fit model "${name}"'s context of ${contextSize} tokens: shorten it or raise "contextSize"`,
    'messages',
  );
}

/** The chat template or the tool schemas were rejected by llama.cpp (a template's own `raise_exception`, an unsupported JSON Schema). */
export function promptFormatError(name: string, message: string, param: 'messages' | 'tools'): OcularError {
  return validationError(
    param === 'tools'
      ? `model "${name}" cannot use these tools: ${message}`
      : `model "${name}"'s chat template rejected the conversation: ${message}`,
    param,
  );
}

/** A failure inside the engine while generating. */
export function generationError(name: string, cause: unknown): OcularError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new OcularError('server_error', `model "${name}" failed while generating: ${detail}`, { cause });
}

/** Requests that were waiting or running when the model was closed. */
export function closedError(name: string): OcularError {
  return new OcularError('unavailable_error', `model "${name}" is shutting down`);
}
