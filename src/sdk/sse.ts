/** One server-sent event. `event` is `message` when the stream names none. */
export interface ServerSentEvent {
  event: string;
  data: string;
  id: string | undefined;
}

/**
 * Parses a byte stream as server-sent events (the WHATWG event-stream format), whatever the chunk boundaries:
 * a line, a CRLF pair or a multi-byte character may be split across chunks. Comment lines (`: keep-alive`) are
 * skipped; an event without data is not dispatched.
 */
export async function* parseServerSentEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  const parser = new EventStreamParser();
  for await (const chunk of body) {
    yield* parser.push(decoder.decode(chunk, { stream: true }));
  }
  yield* parser.push(decoder.decode());
  parser.end();
}

/** The line and field state machine, fed decoded text. */
export class EventStreamParser {
  #buffer = '';
  /** The previous chunk ended with CR: an LF starting the next one belongs to that line break. */
  #pendingCarriageReturn = false;
  #event = '';
  #data: string[] = [];
  #id: string | undefined;
  #lastId: string | undefined;
  #first = true;

  /** Events completed by `text`. */
  *push(text: string): Generator<ServerSentEvent> {
    if (text === '') return;
    if (this.#first) {
      this.#first = false;
      if (text.startsWith('\uFEFF')) text = text.slice(1);
    }
    if (this.#pendingCarriageReturn && text.startsWith('\n')) text = text.slice(1);
    this.#pendingCarriageReturn = false;
    this.#buffer += text;
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.#buffer);
      if (found === null) break;
      // A CR at the very end may be the first half of a CRLF still in flight.
      if (found[0] === '\r' && found.index === this.#buffer.length - 1) this.#pendingCarriageReturn = true;
      const event = this.#line(this.#buffer.slice(start, found.index));
      if (event) yield event;
      start = found.index + found[0].length;
    }
    this.#buffer = this.#buffer.slice(start);
  }

  /** At the end of the stream: an event whose blank line never came is incomplete, and dropped (as the spec says). */
  end(): void {
    this.#buffer = '';
    this.#data = [];
    this.#event = '';
  }

  #line(line: string): ServerSentEvent | undefined {
    if (line === '') {
      if (this.#data.length === 0) {
        this.#event = '';
        return undefined;
      }
      const event = { event: this.#event || 'message', data: this.#data.join('\n'), id: this.#id ?? this.#lastId };
      this.#lastId = event.id;
      this.#event = '';
      this.#data = [];
      this.#id = undefined;
      return event;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
    else if (field === 'id' && !value.includes('\0')) this.#id = value;
    return undefined;
  }
}
