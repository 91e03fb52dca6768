import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import type { CodeCell } from '@jupyterlab/cells';
import { INotebookTracker, Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { cellExecution, endNotices, longCellDue } from '../endNotices';
import { longCellMessage } from '../format';
import { ITorchlab } from '../tokens';

type Cell = Notebook['widgets'][number];

/**
 * A word when a long cell ends: a cell that ran past the threshold (setting longCellSeconds,
 * default 60 s) and finished, or failed, while its notebook was not the visible, focused
 * document gets a notification with "Go to cell", and a browser notification where the site may
 * send them. Nothing for short cells, nor while the user is looking at that notebook.
 *
 * A cell's time runs from the moment it was queued or the previous cell of its notebook
 * finished, whichever is later, so "Run all" times each cell, not the queue (endNotices.ts,
 * longCellDue).
 *
 * Where a run of the same execution ended and run-notify told it first, no second notification is
 * posted on the page (the desktop one still goes, as run-notify sends none); where this one comes
 * first, run-notify puts the run's message in its place (endNotices.ts).
 */
export const longCellPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:long-cell',
  description: 'A notification when a long cell finishes while its notebook is not in view.',
  autoStart: true,
  requires: [ITorchlab, INotebookTracker],
  activate: (app: JupyterFrontEnd, torchlab: ITorchlab, tracker: INotebookTracker) => {
    const { settings } = torchlab;
    const queued = new WeakMap<Cell, number>();
    const lastDone = new WeakMap<Notebook, number>();
    let askedPermission = false;

    NotebookActions.executionScheduled.connect((_, { cell }) => {
      queued.set(cell, Date.now());
    });
    NotebookActions.executed.connect((_, { notebook, cell, success, error }) => {
      const now = Date.now();
      const at = queued.get(cell);
      queued.delete(cell);
      const previous = lastDone.get(notebook) ?? 0;
      lastDone.set(notebook, now);
      const panel = tracker.find(p => p.content === notebook);
      if (!panel) {
        return;
      }
      const seconds = longCellDue({
        queuedAt: at,
        previousDone: previous,
        now,
        isCode: cell.model.type === 'code',
        enabled: settings.longCellNotification,
        thresholdSeconds: settings.longCellSeconds,
        inView: isInView(app, panel)
      });
      if (seconds === null) {
        return;
      }
      const execution = cellExecution(
        panel.sessionContext.session?.kernel?.id ?? null,
        requestMsgId(cell as CodeCell)
      );
      const index = notebook.widgets.indexOf(cell);
      const count = (cell.model as { executionCount?: number | null }).executionCount ?? null;
      const { title, body } = longCellMessage({
        path: panel.context.path,
        index,
        executionCount: count,
        seconds,
        ok: success,
        error: error ? `${error.errorName}: ${error.errorValue}` : null
      });
      const goToCell = () => void showCell(app, panel, cell);
      const actions: Notification.IAction[] = [{ label: 'Go to cell', callback: goToCell }];
      const browser = settings.longCellBrowserNotification ? browserNotifications() : null;
      if (browser?.permission === 'default' && !askedPermission) {
        actions.push({
          label: 'Also notify me in the browser',
          callback: () => {
            askedPermission = true;
            void browser.requestPermission();
          }
        });
      }
      if (endNotices.cellEnded(execution).kind === 'post') {
        const id = (success ? Notification.success : Notification.error)(body, {
          autoClose: false,
          actions
        });
        endNotices.told(execution, 'cell', id);
      }
      if (browser?.permission === 'granted') {
        const shown = new browser(title, { body, tag: `torchlab-${panel.context.path}` });
        shown.onclick = () => {
          window.focus();
          goToCell();
          shown.close();
        };
      }
    });
  }
};

/** The msg_id of the execute request the cell's output area sent (the one that just ended). */
function requestMsgId(cell: CodeCell): string | null {
  try {
    return cell.outputArea?.future?.msg?.header?.msg_id ?? null;
  } catch {
    return null; // a future disposed along with its kernel connection
  }
}

/** Whether the user is looking at this notebook now: the page is visible and focused, and the
 * notebook is the current document. */
function isInView(app: JupyterFrontEnd, panel: NotebookPanel): boolean {
  return (
    document.visibilityState === 'visible' &&
    document.hasFocus() &&
    app.shell.currentWidget === panel &&
    panel.isVisible
  );
}

async function showCell(app: JupyterFrontEnd, panel: NotebookPanel, cell: Cell): Promise<void> {
  if (panel.isDisposed) {
    return;
  }
  app.shell.activateById(panel.id);
  const notebook = panel.content;
  const index = notebook.widgets.indexOf(cell);
  if (index < 0) {
    return; // the cell was deleted since
  }
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  await notebook.scrollToCell(cell, 'center');
}

/** The browser's Notification API, where there is one (not in every embedding). */
function browserNotifications(): typeof window.Notification | null {
  return typeof window !== 'undefined' && 'Notification' in window ? window.Notification : null;
}
