import './styles.css';
import { ApiError, describeError, requestJson, savedKey, saveKey } from './api.ts';
import { setUpChatPage } from './chat-page.ts';
import { required } from './dom.ts';
import { setUpLibraryPage } from './library-page.ts';

const keyForm = required<HTMLFormElement>('#key-form');
const keyInput = required<HTMLInputElement>('#api-key');
const keyStatus = required<HTMLElement>('#key-status');

const chat = setUpChatPage();
const library = setUpLibraryPage();
const pages = {
  chat: { tab: required<HTMLButtonElement>('#nav-chat'), section: required<HTMLElement>('#chat-page'), page: chat },
  library: { tab: required<HTMLButtonElement>('#nav-library'), section: required<HTMLElement>('#library-page'), page: library },
};
type PageName = keyof typeof pages;

function show(name: PageName): void {
  for (const [other, { tab, section }] of Object.entries(pages)) {
    const selected = other === name;
    tab.setAttribute('aria-selected', String(selected));
    section.hidden = !selected;
  }
  if (name === 'library') library.onShow();
  else library.onHide();
  if (name === 'chat') chat.onShow();
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
}

/** Checks the saved key against the server, so a wrong one is reported at once rather than on first use. */
async function checkKey(): Promise<void> {
  const key = savedKey();
  try {
    await requestJson('GET', '/v1/models');
    keyStatus.textContent = key === '' ? 'This server needs no key' : 'Key saved';
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) keyStatus.textContent = describeError(error);
    else if (key === '') keyStatus.textContent = 'Enter an API key (the bootstrap key the server printed, or one from ocular keys create)';
    else keyStatus.textContent = 'This key is not accepted';
  }
}

keyInput.value = savedKey();
keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  saveKey(keyInput.value.trim());
  void checkKey().then(() => show(location.hash === '#library' ? 'library' : 'chat'));
});
pages.chat.tab.addEventListener('click', () => show('chat'));
pages.library.tab.addEventListener('click', () => show('library'));

void checkKey();
show(location.hash === '#library' ? 'library' : 'chat');
