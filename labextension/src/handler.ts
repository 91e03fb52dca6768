/**
 * The one place that talks to the server: REST through ServerConnection (base URL, XSRF and
 * token handled like every JupyterLab request) and the snapshot WebSocket.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { IStream, IStreamHandlers, ITransport } from './connection';
import type { ISnapshot } from './types';
import { describeFailure } from './unavailable';

/** The URL namespace of the server extension. */
export const API_NAMESPACE = 'torchlab/api';

/**
 * A failed response: the message to show, and whether it means the server extension is not
 * loaded (`unavailable`, see unavailable.ts), so the model stops asking every few seconds.
 */
export class TorchlabResponseError extends ServerConnection.ResponseError {
  constructor(
    response: Response,
    message: string,
    readonly unavailable: boolean
  ) {
    super(response, message);
  }
}

/**
 * Call `torchlab/api/<endPoint>` and return the parsed JSON body.
 *
 * Errors carry the server's own message (`{"message": ...}` from jupyter_server's JSON errors)
 * so a dialog can show what went wrong and what to do; see unavailable.ts for the answers that
 * mean the server extension is not loaded.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  // URLExt.join normalises paths only; the query string is appended after it untouched.
  const [path, query] = endPoint.split('?', 2);
  const url =
    URLExt.join(settings.baseUrl, API_NAMESPACE, path) + (query !== undefined ? `?${query}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // Not JSON (e.g. a proxy's HTML error page): keep the text for the error message.
    }
  }
  if (!response.ok) {
    const failure = describeFailure(
      url.split('?')[0],
      response.status,
      response.statusText,
      data
    );
    throw new TorchlabResponseError(response, failure.message, failure.unavailable);
  }
  return data as T;
}

/** Ask the server to copy the tutorial into `dir`; resolve to the new notebook's path. */
export async function createTutorial(
  dir: string,
  settings?: ServerConnection.ISettings
): Promise<string> {
  const body = await requestAPI<{ path: string }>(
    'tutorial',
    { method: 'POST', body: JSON.stringify({ dir }) },
    settings
  );
  return body.path;
}

/** Return the WebSocket URL of the snapshot stream, with the token where the page uses one. */
export function streamUrl(settings: ServerConnection.ISettings): string {
  let url = URLExt.join(settings.wsUrl, API_NAMESPACE, 'stream');
  // Same rule as the kernel WebSocket: browsers cannot set headers on a WebSocket.
  if (settings.token && settings.appendToken) {
    url += `?token=${encodeURIComponent(settings.token)}`;
  }
  return url;
}

/** The real transport of the metrics model. */
export class ServerTransport implements ITransport {
  constructor(settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {
    this._settings = settings;
  }

  connect(handlers: IStreamHandlers): IStream {
    let socket: WebSocket;
    try {
      socket = new this._settings.WebSocket(streamUrl(this._settings));
    } catch {
      // Report the failure asynchronously, like a socket that failed to open.
      const timer = setTimeout(() => handlers.close(), 0);
      return { close: () => clearTimeout(timer) };
    }
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        handlers.close();
      }
    };
    socket.onopen = () => handlers.open();
    socket.onmessage = event => {
      try {
        handlers.message(JSON.parse(event.data as string) as ISnapshot);
      } catch (error) {
        console.warn('jupyter-torchlab: ignoring a malformed stream message', error);
      }
    };
    socket.onerror = finish;
    socket.onclose = finish;
    return {
      close: () => {
        done = true;
        socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
        socket.close();
      }
    };
  }

  fetch(): Promise<ISnapshot> {
    return requestAPI<ISnapshot>('metrics', {}, this._settings);
  }

  async fetchHistory(seconds: number): Promise<ISnapshot[]> {
    const body = await requestAPI<{ snapshots: ISnapshot[] }>(
      `metrics/history?seconds=${encodeURIComponent(seconds)}`,
      {},
      this._settings
    );
    return body.snapshots ?? [];
  }

  private _settings: ServerConnection.ISettings;
}
