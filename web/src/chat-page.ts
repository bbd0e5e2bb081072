// The chat page: a conversation kept in the page, sent whole to POST /v1/chat each turn and streamed back.
import { describeError, requestJson, streamEvents } from './api.ts';
import {
  formatBytes,
  MAX_CONVERSATION_BYTES,
  MAX_FILE_BYTES,
  MAX_FILES_PER_MESSAGE,
  PART_TYPES,
  readAttachment,
  refusal,
  type Attachment,
} from './attachments.ts';
import { element, required } from './dom.ts';
import { renderMarkdown } from './markdown.ts';

interface Turn {
  role: 'user' | 'assistant';
  text: string;
  attachments: Attachment[];
}

/** One event of Reka's stream: the whole text so far, and on the last one a finish reason. */
interface RekaStreamEvent {
  responses?: Array<{ chunk?: { content?: string | null }; finish_reason?: string | null }>;
}

function toRekaMessage(turn: Turn): unknown {
  if (turn.role === 'assistant' || turn.attachments.length === 0) return { role: turn.role, content: turn.text };
  return {
    role: 'user',
    content: [
      ...turn.attachments.map((attachment) => ({ type: PART_TYPES[attachment.kind], [PART_TYPES[attachment.kind]]: attachment.url })),
      ...(turn.text === '' ? [] : [{ type: 'text', text: turn.text }]),
    ],
  };
}

export function setUpChatPage(): { onShow(): void } {
  const page = required<HTMLElement>('#chat-page');
  const modelSelect = required<HTMLSelectElement>('#model');
  const list = required<HTMLOListElement>('#messages');
  const form = required<HTMLFormElement>('#composer');
  const prompt = required<HTMLTextAreaElement>('#prompt');
  const fileInput = required<HTMLInputElement>('#attach');
  const chips = required<HTMLElement>('#attachments');
  const sendButton = required<HTMLButtonElement>('#send');
  const stopButton = required<HTMLButtonElement>('#stop');
  const errorLine = required<HTMLElement>('#chat-error');
  required<HTMLElement>('#attach-limits').textContent =
    `up to ${MAX_FILES_PER_MESSAGE} files per message, ${formatBytes(MAX_FILE_BYTES)} each, ` +
    `${formatBytes(MAX_CONVERSATION_BYTES)} per conversation`;

  const turns: Turn[] = [];
  let pending: Attachment[] = [];
  let streaming: AbortController | undefined;
  let modelsLoaded = false;

  const sentBytes = (): number => [...turns.flatMap((turn) => turn.attachments), ...pending].reduce((sum, item) => sum + item.size, 0);

  const showError = (message: string): void => {
    errorLine.textContent = message;
  };

  const renderChips = (): void => {
    chips.replaceChildren(
      ...pending.map((attachment, index) => {
        const remove = element('button', { type: 'button', className: 'small', title: 'Remove' }, '×');
        remove.addEventListener('click', () => {
          pending = pending.filter((_, at) => at !== index);
          renderChips();
        });
        return element(
          'span',
          { className: `chip ${attachment.kind}` },
          `${attachment.kind}: ${attachment.name} (${formatBytes(attachment.size)}) `,
          remove,
        );
      }),
    );
  };

  const attach = async (files: Iterable<File>): Promise<void> => {
    showError('');
    for (const file of files) {
      const reason = refusal(file, pending.length, sentBytes());
      if (reason !== undefined) {
        showError(reason);
        continue;
      }
      try {
        pending.push(await readAttachment(file));
      } catch (error) {
        showError(describeError(error));
      }
      renderChips();
    }
  };

  const attachmentView = (attachment: Attachment): HTMLElement => {
    if (attachment.kind === 'image') return element('img', { src: attachment.url, alt: attachment.name, className: 'thumb' });
    return element('span', { className: `chip ${attachment.kind}` }, `${attachment.kind}: ${attachment.name}`);
  };

  const addBubble = (turn: Turn): HTMLElement => {
    const body = element('div', { className: 'body markdown' });
    const item = element(
      'li',
      { className: `message ${turn.role}` },
      element('div', { className: 'who' }, turn.role === 'user' ? 'You' : 'Model'),
    );
    if (turn.attachments.length > 0) item.append(element('div', { className: 'attached' }, ...turn.attachments.map(attachmentView)));
    item.append(body);
    if (turn.role === 'user') body.textContent = turn.text;
    else renderMarkdown(body, turn.text);
    list.append(item);
    item.scrollIntoView({ block: 'end' });
    return body;
  };

  const setStreaming = (controller: AbortController | undefined): void => {
    streaming = controller;
    sendButton.disabled = controller !== undefined;
    stopButton.disabled = controller === undefined;
  };

  const send = async (): Promise<void> => {
    const text = prompt.value.trim();
    if (streaming !== undefined || (text === '' && pending.length === 0)) return;
    showError('');
    const userTurn: Turn = { role: 'user', text, attachments: pending };
    turns.push(userTurn);
    addBubble(userTurn);
    prompt.value = '';
    pending = [];
    renderChips();

    const answer: Turn = { role: 'assistant', text: '', attachments: [] };
    const body = addBubble(answer);
    body.classList.add('streaming');
    const controller = new AbortController();
    setStreaming(controller);
    const model = modelSelect.value;
    try {
      await streamEvents(
        '/v1/chat',
        { ...(model === '' ? {} : { model }), messages: turns.map(toRekaMessage), stream: true },
        (message) => {
          const event = JSON.parse(message.data) as RekaStreamEvent;
          const content = event.responses?.[0]?.chunk?.content;
          if (typeof content === 'string') {
            answer.text = content;
            renderMarkdown(body, content);
          }
        },
        controller.signal,
      );
      turns.push(answer);
    } catch (error) {
      if ((error as Error).name === 'AbortError') {
        // What arrived stays in the conversation, so the next turn can build on it.
        if (answer.text !== '') turns.push(answer);
        body.append(element('p', { className: 'muted stopped' }, '(stopped)'));
      } else {
        // The question stays in the page but leaves the conversation, so it can be asked again.
        turns.pop();
        body.closest('li')?.classList.add('failed');
        body.textContent = '';
        showError(describeError(error));
      }
    } finally {
      body.classList.remove('streaming');
      setStreaming(undefined);
    }
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void send();
  });
  prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      void send();
    }
  });
  stopButton.addEventListener('click', () => streaming?.abort());
  fileInput.addEventListener('change', () => {
    void attach([...(fileInput.files ?? [])]).finally(() => (fileInput.value = ''));
  });
  page.addEventListener('dragover', (event) => {
    if (!event.dataTransfer?.types.includes('Files')) return;
    event.preventDefault();
    page.classList.add('dropping');
  });
  page.addEventListener('dragleave', (event) => {
    if (event.target === page) page.classList.remove('dropping');
  });
  page.addEventListener('drop', (event) => {
    event.preventDefault();
    page.classList.remove('dropping');
    void attach([...(event.dataTransfer?.files ?? [])]);
  });
  required<HTMLButtonElement>('#new-chat').addEventListener('click', () => {
    streaming?.abort();
    turns.length = 0;
    pending = [];
    renderChips();
    list.replaceChildren();
    showError('');
  });

  const loadModels = async (): Promise<void> => {
    try {
      const models = await requestJson<Array<{ id: string }>>('GET', '/v1/models');
      const chosen = modelSelect.value;
      modelSelect.replaceChildren(...models.map((model) => element('option', { value: model.id }, model.id)));
      if (models.some((model) => model.id === chosen)) modelSelect.value = chosen;
      if (models.length === 0) showError('The server has no chat model configured.');
      modelsLoaded = true;
    } catch (error) {
      showError(describeError(error));
    }
  };

  return {
    onShow: () => {
      if (!modelsLoaded) void loadModels();
    },
  };
}
