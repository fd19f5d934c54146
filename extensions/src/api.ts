/**
 * The case desk's calls to its server extension (`<base_url>/cpms/api/...`).
 *
 * Same-origin requests through Jupyter's ServerConnection, which adds the
 * XSRF header; the browser never holds a case-store token. Refusals arrive in
 * CPMS's one error shape `{status, error, reasons}` and become DeskError.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One row of the sidebar: what the server extension sends of a case. */
export interface ICaseSummary {
  id: string;
  title: string;
  network: string;
  hospital: string;
  owner: string;
  status: string;
  consent: 'granted' | 'withdrawn' | 'missing';
  consent_granted: string[];
  panel_deadline: string | null;
  updated_at: string | null;
  /** the review app's workspace of this case (made by the server extension) */
  review_url: string;
}

export type NotificationKind =
  | 'panel-invitation'
  | 'information-request'
  | 'outcome-signed'
  | 'other';

export interface INotification {
  id: string;
  kind: NotificationKind;
  /** the store's own kind (mention, meeting, deadline, ...), for the record */
  store_kind: string;
  case_id: string | null;
  text: string;
  created_at: string | null;
  read: boolean;
  /** where the review app shows it (the inbox for an invitation, else the case) */
  link: string;
}

export interface INotificationsAnswer {
  /** false while the store has no notifications route (no panel review part yet) */
  available: boolean;
  notifications: INotification[];
}

export interface INotebookAnswer {
  path: string;
  created: boolean;
}

/** A refusal from the desk or the store behind it, with the reasons to show. */
export class DeskError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly reasons: string[]
  ) {
    super(`${error}: ${reasons.join('; ')}`);
  }
}

/** The URL of a desk endpoint (for requests and for the PDF viewer). */
export function deskUrl(...parts: string[]): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'cpms', 'api', ...parts);
}

/** One request to the desk; the raw response when it succeeded. */
export async function deskFetch(
  parts: string[],
  init: RequestInit = {}
): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(deskUrl(...parts), init, settings);
  } catch (reason) {
    throw new DeskError(0, 'network error', ['the Jupyter server did not answer']);
  }
  if (!response.ok) {
    let body: any = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const error = (body && body.error) || `HTTP ${response.status}`;
    const reasons: string[] = (body && body.reasons) || [error];
    throw new DeskError(response.status, error, reasons);
  }
  return response;
}

export async function deskJson<T>(parts: string[], init: RequestInit = {}): Promise<T> {
  const response = await deskFetch(parts, init);
  return (await response.json()) as T;
}

export const listCases = (): Promise<ICaseSummary[]> => deskJson(['cases']);

export const listNotifications = (): Promise<INotificationsAnswer> =>
  deskJson(['notifications']);

export const newCaseNotebook = (): Promise<INotebookAnswer> =>
  deskJson(['new-case-notebook'], { method: 'POST' });

export const caseNotebook = (caseId: string): Promise<INotebookAnswer> =>
  deskJson(['case-notebook', encodeURIComponent(caseId)], { method: 'POST' });

export const markRead = (id: string): Promise<INotification> =>
  deskJson(['notifications', encodeURIComponent(id), 'read'], { method: 'POST' });

export async function outcomePdf(caseId: string): Promise<Blob> {
  const response = await deskFetch(['cases', encodeURIComponent(caseId), 'outcome.pdf']);
  return response.blob();
}
