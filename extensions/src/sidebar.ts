/**
 * The "Cases" sidebar: the user's cases with filters, and their notifications.
 *
 * Plain DOM in a Lumino widget, styled only with JupyterLab's CSS variables so
 * that it follows the light and dark themes. The lists are refreshed by a poll
 * (every two minutes, paused while the page is hidden), whenever the desk is
 * shown again, shortly after a notebook cell ran (see index.ts) and on the
 * Refresh button; the DOM is rebuilt only when what the server sent has
 * changed. Filters apply in the browser, so nothing typed into them travels in
 * a URL. Items carry the case id in `data-case-id`, which the context menu's
 * commands read.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import {
  DeskError,
  ICaseSummary,
  INotification,
  INotificationsAnswer,
  listCases,
  listNotifications
} from './api';

/** What the sidebar asks its host to do (commands of the plugin). */
export interface IDeskActions {
  newCase(): void;
  openCaseNotebook(caseId: string): void;
  openReviewApp(caseId: string): void;
  openOutcome(caseId: string): void;
  openNotification(note: INotification): void;
}

// every listing of cases is an audited read of each case in the store: poll gently, and
// refresh on the events that matter instead (shown again, a cell ran, Refresh)
const REFRESH_MS = 120_000;

const CONSENT_TEXT: Record<ICaseSummary['consent'], string> = {
  granted: 'consent given',
  withdrawn: 'consent withdrawn',
  missing: 'no consent yet'
};

const KIND_TEXT: Record<INotification['kind'], string> = {
  'panel-invitation': 'Panel invitation',
  'information-request': 'Information requested',
  'outcome-signed': 'Outcome signed',
  other: 'Notice'
};

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

export class CasesPanel extends Widget {
  constructor(private readonly actions: IDeskActions) {
    super();
    this.id = 'cpms-case-desk';
    this.addClass('cpms-desk');
    this.title.caption = 'CPMS cases';

    const header = el('div', 'cpms-desk-header');
    header.appendChild(el('h2', 'cpms-desk-heading', 'Cases'));
    const newCase = el('button', 'jp-Button jp-mod-styled jp-mod-accept cpms-new-case', 'New case');
    newCase.title = 'A new notebook from the submission template, connected to the store';
    newCase.addEventListener('click', () => this.actions.newCase());
    const refresh = el('button', 'jp-Button jp-mod-styled cpms-refresh', 'Refresh');
    refresh.addEventListener('click', () => void this.refresh());
    header.append(newCase, refresh);

    const filters = el('div', 'cpms-desk-filters');
    this._text = el('input', 'jp-InputGroup cpms-filter-text');
    this._text.type = 'search';
    this._text.placeholder = 'Filter by title';
    this._text.setAttribute('aria-label', 'Filter cases by title');
    this._status = el('select', 'jp-mod-styled cpms-filter-status');
    this._status.setAttribute('aria-label', 'Filter cases by status');
    this._network = el('select', 'jp-mod-styled cpms-filter-network');
    this._network.setAttribute('aria-label', 'Filter cases by network');
    for (const input of [this._text, this._status, this._network]) {
      input.addEventListener('input', () => this._renderCases());
    }
    filters.append(this._text, this._status, this._network);

    this._message = el('div', 'cpms-desk-message');
    this._list = el('ul', 'cpms-case-list');
    this._list.addEventListener('click', event => this._onListClick(event));
    this._list.addEventListener('dblclick', event => {
      const id = this._caseIdOf(event.target);
      if (id) {
        this.actions.openCaseNotebook(id);
      }
    });
    this._list.addEventListener('keydown', event => {
      // Enter on a focused case (not on one of its buttons, which click themselves)
      const id = this._caseIdOf(event.target);
      if (event.key === 'Enter' && id && (event.target as HTMLElement).matches('li')) {
        this.actions.openCaseNotebook(id);
      }
    });
    this._list.addEventListener('contextmenu', event => {
      this.contextCaseId = this._caseIdOf(event.target);
    });

    const notes = el('section', 'cpms-notifications');
    notes.appendChild(el('h3', 'cpms-desk-subheading', 'Notifications'));
    this._notes = el('ul', 'cpms-notification-list');
    this._notesEmpty = el('p', 'cpms-notifications-empty', 'No notifications');
    notes.append(this._notes, this._notesEmpty);

    this.node.append(header, filters, this._message, this._list, notes);

    this._poll = new Poll({
      factory: () => this.refresh(),
      frequency: { interval: REFRESH_MS, backoff: true, max: 10 * REFRESH_MS },
      standby: 'when-hidden',
      name: '@cpms/lab:cases'
    });
  }

  /** The case whose item was right-clicked last (for the context menu's commands). */
  contextCaseId: string | null = null;

  get cases(): readonly ICaseSummary[] {
    return this._cases;
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  /** Shown again (tab clicked, side bar opened): what changed meanwhile shows at once. */
  protected onAfterShow(): void {
    void this._poll.refresh();
  }

  /** Fetch cases and notifications again; redraw what changed. */
  async refresh(): Promise<void> {
    const [cases, notes] = await Promise.allSettled([listCases(), listNotifications()]);
    if (cases.status === 'fulfilled') {
      const key = JSON.stringify(cases.value);
      if (key !== this._casesKey) {
        this._casesKey = key;
        this._cases = cases.value;
        this._renderFilters();
        this._renderCases();
      }
      this._showMessage('');
    } else {
      this._showMessage(describe(cases.reason));
    }
    if (notes.status === 'fulfilled') {
      // the items name their cases' titles: redrawn when either changed
      const key = JSON.stringify(notes.value) + this._casesKey;
      if (key !== this._notesKey) {
        this._notesKey = key;
        this._renderNotifications(notes.value);
      }
    }
    this.node.dataset.loaded = 'true';
    if (cases.status === 'rejected') {
      throw cases.reason; // the poll backs off
    }
  }

  private _caseIdOf(target: EventTarget | null): string | null {
    const item = (target as HTMLElement | null)?.closest<HTMLElement>('.cpms-case-item');
    return item?.dataset.caseId ?? null;
  }

  private _onListClick(event: MouseEvent): void {
    const target = event.target as HTMLElement;
    const id = this._caseIdOf(target);
    if (!id) {
      return;
    }
    const action = target.closest<HTMLElement>('[data-action]')?.dataset.action;
    if (action === 'notebook') {
      this.actions.openCaseNotebook(id);
    } else if (action === 'review') {
      this.actions.openReviewApp(id);
    } else if (action === 'outcome') {
      this.actions.openOutcome(id);
    }
    for (const item of Array.from(this._list.children)) {
      item.classList.toggle('jp-mod-selected', (item as HTMLElement).dataset.caseId === id);
    }
  }

  private _showMessage(text: string): void {
    this._message.textContent = text;
    this._message.hidden = !text;
  }

  private _renderFilters(): void {
    const fill = (select: HTMLSelectElement, all: string, values: string[]) => {
      const current = select.value;
      select.replaceChildren(new Option(all, ''));
      for (const value of values) {
        select.appendChild(new Option(value, value));
      }
      select.value = values.includes(current) ? current : '';
    };
    const distinct = (pick: (c: ICaseSummary) => string) =>
      Array.from(new Set(this._cases.map(pick))).sort();
    fill(this._status, 'Any status', distinct(c => c.status));
    fill(this._network, 'Any network', distinct(c => c.network));
  }

  private _renderCases(): void {
    const text = this._text.value.trim().toLowerCase();
    const status = this._status.value;
    const network = this._network.value;
    const shown = this._cases.filter(
      c =>
        (!text || c.title.toLowerCase().includes(text)) &&
        (!status || c.status === status) &&
        (!network || c.network === network)
    );
    this._list.replaceChildren(...shown.map(c => this._caseItem(c)));
    if (this._cases.length === 0) {
      this._list.appendChild(el('li', 'cpms-case-none', 'No cases yet: start one with New case.'));
    } else if (shown.length === 0) {
      this._list.appendChild(el('li', 'cpms-case-none', 'No case matches the filters.'));
    }
  }

  private _caseItem(c: ICaseSummary): HTMLLIElement {
    const item = el('li', 'cpms-case-item');
    item.dataset.caseId = c.id;
    item.dataset.status = c.status;
    item.tabIndex = 0;
    item.title = 'Double-click to open the case in a notebook; right-click for more';
    item.appendChild(el('div', 'cpms-case-title', c.title || '(untitled)'));
    const meta = el('div', 'cpms-case-meta');
    meta.append(
      el('span', 'cpms-case-network', c.network),
      el('span', `cpms-case-status cpms-status-${c.status}`, c.status),
      el('span', `cpms-case-consent cpms-consent-${c.consent}`, CONSENT_TEXT[c.consent])
    );
    if (c.panel_deadline) {
      meta.appendChild(el('span', 'cpms-case-deadline', `panel by ${c.panel_deadline}`));
    }
    item.appendChild(meta);
    const actions = el('div', 'cpms-case-actions');
    const button = (action: string, label: string, title: string) => {
      const b = el('button', `jp-Button jp-mod-minimal cpms-case-${action}`, label);
      b.dataset.action = action;
      b.title = title;
      return b;
    };
    actions.append(
      button('notebook', 'Notebook', 'Open case in notebook'),
      button('review', 'Review', 'Open in review app'),
      button('outcome', 'Outcome', 'Open the signed outcome (PDF)')
    );
    item.appendChild(actions);
    return item;
  }

  private _renderNotifications(answer: INotificationsAnswer): void {
    const notes = answer.notifications;
    this._notes.replaceChildren(
      ...notes.map(note => {
        const item = el('li', `cpms-notification cpms-notification-${note.kind}`);
        item.dataset.kind = note.kind;
        if (note.case_id) {
          item.dataset.caseId = note.case_id;
        }
        item.classList.toggle('cpms-mod-unread', !note.read);
        item.tabIndex = 0;
        item.append(el('div', 'cpms-notification-kind', KIND_TEXT[note.kind]));
        item.append(el('div', 'cpms-notification-text', note.text));
        // the case's title from the user's own list (the notification itself carries none)
        const title = this._cases.find(c => c.id === note.case_id)?.title;
        if (title) {
          item.append(el('div', 'cpms-notification-case', title));
        }
        item.addEventListener('click', () => this.actions.openNotification(note));
        item.addEventListener('keydown', event => {
          if (event.key === 'Enter') {
            this.actions.openNotification(note);
          }
        });
        return item;
      })
    );
    this._notesEmpty.hidden = notes.length > 0;
    this._notesEmpty.title = answer.available
      ? ''
      : 'This case store does not send notifications yet';
  }

  private _cases: ICaseSummary[] = [];
  private _casesKey = '';
  private _notesKey = '';
  private readonly _text: HTMLInputElement;
  private readonly _status: HTMLSelectElement;
  private readonly _network: HTMLSelectElement;
  private readonly _message: HTMLDivElement;
  private readonly _list: HTMLUListElement;
  private readonly _notes: HTMLUListElement;
  private readonly _notesEmpty: HTMLParagraphElement;
  private readonly _poll: Poll;
}

export function describe(reason: unknown): string {
  if (reason instanceof DeskError) {
    return `${reason.error}: ${reason.reasons.join('; ')}`;
  }
  return 'the case desk could not reach the Jupyter server';
}
