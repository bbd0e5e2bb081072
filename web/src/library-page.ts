// The library page: upload (with progress), the videos and their indexing status, search, a player, and
// questions about one video with citations that seek the player.
import { describeError, requestJson, streamEvents, upload } from './api.ts';
import { formatTime, linkCitations } from './citations.ts';
import { element, required } from './dom.ts';
import { renderMarkdown } from './markdown.ts';

interface WireVideo {
  video_id: string;
  video_name: string;
  url: string;
  indexing_status: 'pending' | 'indexing' | 'indexed' | 'failed';
  indexing_progress: number;
  indexing_stage: string | null;
  error?: string;
  metadata: { duration: number | null };
  created_at: string;
}

interface WireHit {
  video_id: string;
  video_title: string;
  start_timestamp: number;
  end_timestamp: number;
  score: number;
  plain_text_caption: string;
  s3_presigned_url: string;
  thumbnail_url: string;
}

/** Events of POST /v1/qa/chat: the answer so far in `chat_response`, and `status` on the last one. */
interface QaEvent {
  chat_response?: string;
  status?: string;
  error?: { message?: string };
}

/** How often the table is refreshed while a video is still being indexed. */
const POLL_MS = 1500;
const PAGE_SIZE = 100;

export function setUpLibraryPage(): { onShow(): void; onHide(): void } {
  const uploadForm = required<HTMLFormElement>('#upload-form');
  const uploadFile = required<HTMLInputElement>('#upload-file');
  const uploadName = required<HTMLInputElement>('#upload-name');
  const uploadButton = required<HTMLButtonElement>('#upload-button');
  const uploadCancel = required<HTMLButtonElement>('#upload-cancel');
  const progress = required<HTMLProgressElement>('#upload-progress');
  const uploadStatus = required<HTMLElement>('#upload-status');
  const tableBody = required<HTMLTableSectionElement>('#videos tbody');
  const videosError = required<HTMLElement>('#videos-error');
  const searchForm = required<HTMLFormElement>('#search-form');
  const searchQuery = required<HTMLInputElement>('#search-query');
  const searchStatus = required<HTMLElement>('#search-status');
  const results = required<HTMLUListElement>('#search-results');
  const player = required<HTMLVideoElement>('#player');
  const playerTitle = required<HTMLElement>('#player-title');
  const askForm = required<HTMLFormElement>('#ask-form');
  const askVideo = required<HTMLSelectElement>('#ask-video');
  const askQuestion = required<HTMLInputElement>('#ask-question');
  const askButton = required<HTMLButtonElement>('#ask-button');
  const askStop = required<HTMLButtonElement>('#ask-stop');
  const answer = required<HTMLElement>('#ask-answer');
  const askError = required<HTMLElement>('#ask-error');

  let videos: WireVideo[] = [];
  let pollTimer: ReturnType<typeof setTimeout> | undefined;
  let visible = false;
  let asking: AbortController | undefined;

  // ---- player ----

  /** Plays `url` (a signed file URL, maybe with `#t=start,end`) from `start` seconds. */
  const play = (url: string, title: string, start: number, end?: number): void => {
    playerTitle.textContent = end === undefined ? title : `${title} · ${formatTime(start)}–${formatTime(end)}`;
    player.dataset.start = String(start);
    const seek = (): void => {
      player.currentTime = start;
      void player.play().catch(() => undefined); // autoplay may be refused; the user presses play
    };
    const base = (value: string): string => value.split('#')[0] ?? value;
    if (player.src !== '' && base(player.src) === base(new URL(url, location.href).href) && player.readyState >= 1) {
      seek();
      return;
    }
    player.src = url;
    player.addEventListener('loadedmetadata', seek, { once: true });
  };

  const playVideo = (id: string, start: number): void => {
    const video = videos.find((candidate) => candidate.video_id === id);
    if (video !== undefined) play(video.url, video.video_name, start);
  };

  // ---- the table ----

  const statusText = (video: WireVideo): string => {
    if (video.indexing_status === 'indexing') {
      const stage = video.indexing_stage === null ? '' : ` (${video.indexing_stage})`;
      return `indexing ${Math.round(video.indexing_progress * 100)}%${stage}`;
    }
    if (video.indexing_status === 'failed') return `failed${video.error === undefined ? '' : `: ${video.error}`}`;
    return video.indexing_status;
  };

  const renderTable = (): void => {
    tableBody.replaceChildren(
      ...videos.map((video) => {
        const playButton = element('button', { type: 'button', className: 'small' }, 'Play');
        playButton.addEventListener('click', () => play(video.url, video.video_name, 0));
        const askButtonRow = element(
          'button',
          { type: 'button', className: 'small', disabled: video.indexing_status !== 'indexed' },
          'Ask',
        );
        askButtonRow.addEventListener('click', () => {
          askVideo.value = video.video_id;
          askQuestion.focus();
        });
        const deleteButton = element('button', { type: 'button', className: 'small danger' }, 'Delete');
        deleteButton.addEventListener('click', () => void remove(video));
        const row = element(
          'tr',
          {},
          element('td', {}, video.video_name),
          element('td', { className: `status ${video.indexing_status}` }, statusText(video)),
          element('td', {}, video.metadata.duration === null ? '' : formatTime(video.metadata.duration)),
          element('td', {}, new Date(video.created_at).toLocaleString()),
          element('td', { className: 'actions' }, playButton, askButtonRow, deleteButton),
        );
        row.dataset.videoId = video.video_id;
        row.dataset.status = video.indexing_status;
        return row;
      }),
    );
    const chosen = askVideo.value;
    const indexed = videos.filter((video) => video.indexing_status === 'indexed');
    askVideo.replaceChildren(
      element('option', { value: '' }, indexed.length === 0 ? 'No indexed video yet' : 'Choose a video'),
      ...indexed.map((video) => element('option', { value: video.video_id }, video.video_name)),
    );
    if (indexed.some((video) => video.video_id === chosen)) askVideo.value = chosen;
  };

  // One listing at a time; a refresh asked for meanwhile runs once that one is done, so it sees what changed.
  let listing: Promise<void> | undefined;
  let listAgain = false;
  const refresh = (): Promise<void> => {
    if (listing !== undefined) {
      listAgain = true;
      return listing;
    }
    listing = list().finally(() => {
      listing = undefined;
      if (listAgain) {
        listAgain = false;
        void refresh();
      }
    });
    return listing;
  };

  const list = async (): Promise<void> => {
    clearTimeout(pollTimer);
    pollTimer = undefined;
    try {
      const page = await requestJson<{ results: WireVideo[] }>('GET', `/v1/videos?limit=${PAGE_SIZE}`);
      videos = page.results;
      videosError.textContent = '';
      renderTable();
    } catch (error) {
      videosError.textContent = describeError(error);
      return;
    }
    // Live status: poll while something is still on its way to being indexed and the page is shown.
    const busy = videos.some((video) => video.indexing_status === 'indexing' || video.indexing_status === 'pending');
    if (busy && visible) pollTimer = setTimeout(() => void refresh(), POLL_MS);
  };

  const remove = async (video: WireVideo): Promise<void> => {
    if (!confirm(`Delete "${video.video_name}"? Its index and files go too.`)) return;
    try {
      await requestJson('DELETE', `/v1/videos/${encodeURIComponent(video.video_id)}`);
    } catch (error) {
      videosError.textContent = describeError(error);
    }
    await refresh();
  };

  required<HTMLButtonElement>('#refresh-videos').addEventListener('click', () => void refresh());

  // ---- upload ----

  uploadForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const file = uploadFile.files?.[0];
    if (file === undefined) {
      uploadStatus.textContent = 'Choose a video file first.';
      return;
    }
    const form = new FormData();
    form.set('video_name', uploadName.value.trim() || file.name);
    form.set('index', 'true');
    form.set('enable_thumbnails', 'true');
    form.set('file', file, file.name);
    uploadButton.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    uploadStatus.textContent = 'Uploading… 0%';
    const handle = upload('/v1/videos/upload', form, (fraction) => {
      progress.value = fraction;
      uploadStatus.textContent = `Uploading… ${Math.round(fraction * 100)}%`;
    });
    uploadCancel.hidden = false;
    uploadCancel.onclick = () => handle.abort();
    handle.done
      .then(() => {
        progress.value = 1;
        uploadStatus.textContent = 'Uploaded; indexing starts.';
        uploadForm.reset();
      })
      .catch((error: unknown) => {
        uploadStatus.textContent = (error as Error).name === 'AbortError' ? 'Upload cancelled.' : `Upload failed: ${describeError(error)}`;
      })
      .finally(() => {
        uploadCancel.hidden = true;
        uploadButton.disabled = false;
        progress.hidden = true;
        void refresh();
      });
  });

  // ---- search ----

  searchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = searchQuery.value.trim();
    if (query === '') return;
    searchStatus.textContent = 'Searching…';
    requestJson<{ results: WireHit[]; total_results: number }>('POST', '/v1/videos/search', { query, max_results: 20 })
      .then(({ results: hits, total_results: total }) => {
        searchStatus.textContent = hits.length === 0 ? 'Nothing matched.' : `${total} result${total === 1 ? '' : 's'}`;
        results.replaceChildren(
          ...hits.map((hit) => {
            const range = `${formatTime(hit.start_timestamp)}–${formatTime(hit.end_timestamp)}`;
            const button = element(
              'button',
              { type: 'button', className: 'result', title: hit.plain_text_caption },
              element('img', { src: hit.thumbnail_url, alt: '', loading: 'lazy', width: 128, height: 72 }),
              element(
                'span',
                { className: 'what' },
                element('strong', {}, hit.video_title),
                element('span', { className: 'range' }, range),
                element('span', { className: 'muted caption' }, hit.plain_text_caption),
              ),
            );
            button.dataset.start = String(hit.start_timestamp);
            button.dataset.end = String(hit.end_timestamp);
            button.addEventListener('click', () => play(hit.s3_presigned_url, hit.video_title, hit.start_timestamp, hit.end_timestamp));
            return element('li', {}, button);
          }),
        );
      })
      .catch((error: unknown) => {
        searchStatus.textContent = describeError(error);
        results.replaceChildren();
      });
  });

  // ---- ask a video ----

  const setAsking = (controller: AbortController | undefined): void => {
    asking = controller;
    askButton.disabled = controller !== undefined;
    askStop.disabled = controller === undefined;
  };

  const ask = async (): Promise<void> => {
    const videoId = askVideo.value;
    const question = askQuestion.value.trim();
    askError.textContent = '';
    if (videoId === '') {
      askError.textContent = 'Choose an indexed video.';
      return;
    }
    if (question === '' || asking !== undefined) return;
    const controller = new AbortController();
    setAsking(controller);
    answer.replaceChildren();
    answer.classList.add('streaming');
    const show = (text: string): void => {
      renderMarkdown(answer, text);
      linkCitations(answer, (seconds) => playVideo(videoId, seconds));
    };
    try {
      await streamEvents(
        '/v1/qa/chat',
        { video_id: videoId, messages: [{ role: 'user', content: question }], stream: true },
        (message) => {
          const event = JSON.parse(message.data) as QaEvent;
          if (event.error?.message !== undefined) throw new Error(event.error.message);
          if (typeof event.chat_response === 'string') show(event.chat_response);
        },
        controller.signal,
      );
    } catch (error) {
      if ((error as Error).name === 'AbortError') {
        answer.append(element('p', { className: 'muted stopped' }, '(stopped)'));
      } else if ((error as { status?: number }).status === 404) {
        askError.textContent = `${describeError(error)}. Either the video was deleted or this server cannot answer questions about videos.`;
      } else if ((error as { status?: number }).status === 409) {
        askError.textContent = `The video is not ready for questions yet (it must be indexed): ${describeError(error)}`;
      } else {
        askError.textContent = describeError(error);
      }
    } finally {
      answer.classList.remove('streaming');
      setAsking(undefined);
    }
  };

  askForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void ask();
  });
  askStop.addEventListener('click', () => asking?.abort());

  return {
    onShow: () => {
      visible = true;
      void refresh();
    },
    onHide: () => {
      visible = false;
      clearTimeout(pollTimer);
    },
  };
}
