/**
 * Open a run's notebook at its cell: from the panel's run list and from a run's notification.
 *
 * JupyterLab opens (or reveals) the notebook in this page, and the cell is selected and scrolled
 * to once the notebook has loaded. Notebook 7 opens another notebook in a new browser tab: the
 * request goes there through localStorage (same origin), and that page selects the cell when it
 * opens the notebook (`revealRequested`). A cell that is gone (deleted, or never saved) leaves
 * the notebook open where it was.
 */

import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import type { IRun } from './types';

const REQUEST_KEY = 'jupyter-torchlab:reveal-cell';
/** How long another tab may take to open the notebook and honour the request, ms. */
const REQUEST_TTL = 60_000;

interface IRevealRequest {
  path: string;
  cellId: string;
  time: number;
}

export async function openRun(
  app: JupyterFrontEnd,
  tracker: INotebookTracker | null,
  run: IRun
): Promise<void> {
  if (!run.path) {
    return;
  }
  const here = tracker?.find(panel => panel.context.path === run.path) ?? null;
  if (here) {
    app.shell.activateById(here.id);
    await revealCell(here, run.cell_id);
    return;
  }
  if (run.cell_id) {
    writeRequest({ path: run.path, cellId: run.cell_id, time: Date.now() });
  }
  const opened: unknown = await app.commands.execute('docmanager:open', {
    path: run.path,
    factory: 'Notebook'
  });
  const panel = tracker?.find(p => p === opened || p.context.path === run.path) ?? null;
  if (panel) {
    takeRequest(run.path);
    await revealCell(panel, run.cell_id);
  }
}

/** Select the cell a request from another tab asked for, when this page opens its notebook. */
export async function revealRequested(panel: NotebookPanel): Promise<void> {
  await panel.context.ready;
  const request = takeRequest(panel.context.path);
  if (request) {
    await revealCell(panel, request.cellId);
  }
}

/** Select the cell with this id and scroll to it; without it (gone), the notebook stays as is. */
export async function revealCell(panel: NotebookPanel, cellId: string | null): Promise<void> {
  await panel.context.ready;
  if (panel.isDisposed || !cellId) {
    return;
  }
  const notebook = panel.content;
  const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
  if (index < 0) {
    return;
  }
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  await notebook.scrollToCell(notebook.widgets[index], 'center');
}

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage blocked by the browser's settings
  }
}

function writeRequest(request: IRevealRequest): void {
  storage()?.setItem(REQUEST_KEY, JSON.stringify(request));
}

/** The fresh request for this notebook, removed as it is taken. */
function takeRequest(path: string): IRevealRequest | null {
  const store = storage();
  let request: IRevealRequest | null = null;
  try {
    request = JSON.parse(store?.getItem(REQUEST_KEY) ?? 'null');
  } catch {
    request = null;
  }
  if (!request || request.path !== path) {
    return null;
  }
  store?.removeItem(REQUEST_KEY);
  return Date.now() - request.time < REQUEST_TTL ? request : null;
}
