/**
 * What a failed request to `torchlab/api` means, in words a user can act on.
 *
 * Two answers mean "the server extension is not there", and the model then stops asking every
 * few seconds (see `Connection`):
 * - a 503 from the routes of an extension that did not load: its body carries the cause and the
 *   fix (`jupyter_torchlab did not load: <cause>. <fix>.`), also in the page config at load;
 * - a bare 404 (no JSON body): no handler at all, so the extension is not loaded, whether it is
 *   disabled or failed before it could say why.
 * Pure (no JupyterLab imports), so it is tested without a browser.
 */

/** The reason field of the 503 that the routes of an extension that did not load answer. */
export const NOT_LOADED_REASON = 'jupyter_torchlab did not load';

/** The page config key the server sets when the extension did not load (server/load_failure.py). */
export const PAGE_CONFIG_KEY = 'torchlabLoadError';

/** A failed request, with the message to show and whether the extension is not loaded. */
export class RequestFailure extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly unavailable: boolean
  ) {
    super(message);
    this.name = 'RequestFailure';
  }
}

/** Say why a bare 404 happened and where to find out more. */
export function notLoadedMessage(url: string): string {
  return (
    `${url} was not found: the jupyter_torchlab server extension is not loaded in this ` +
    'Jupyter server. The server log says why (look for "jupyter_torchlab"), and ' +
    '`jupyter torchlab doctor` checks it; restart Jupyter after the fix.'
  );
}

/** Turn a failed response (status and parsed body) into the failure to show. */
export function describeFailure(
  url: string,
  status: number,
  statusText: string,
  body: unknown
): RequestFailure {
  const fields = body !== null && typeof body === 'object' ? (body as Record<string, unknown>) : {};
  const text = (fields.message || fields.reason) as string | undefined;
  if (status === 503 && fields.reason === NOT_LOADED_REASON && text) {
    return new RequestFailure(text, status, true);
  }
  if (!text && status === 404) {
    // Our handlers answer 404 with a JSON message; a bare 404 means no handler at all.
    return new RequestFailure(notLoadedMessage(url), status, true);
  }
  return new RequestFailure(text || `${status} ${statusText}`.trim(), status, false);
}

/** Whether an error says the server extension is not loaded (a RequestFailure that says so). */
export function isUnavailable(error: unknown): error is RequestFailure {
  return (
    error !== null &&
    typeof error === 'object' &&
    (error as { unavailable?: unknown }).unavailable === true
  );
}
