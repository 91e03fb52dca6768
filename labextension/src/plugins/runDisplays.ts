import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import type { CodeCell } from '@jupyterlab/cells';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { revealRequested } from '../openRun';
import { restoreDecision, runsByCell } from '../runs';
import { RunView } from '../runView';
import { ITorchlab } from '../tokens';
import type { ISnapshot } from '../types';

type Cell = NotebookPanel['content']['widgets'][number];

/**
 * The display comes back: when a notebook is opened, or the page reloads, while one of its cells
 * still runs a published run (tl.progress, a tqdm drop-in bar, tl.fit), that cell shows the run
 * again, drawn from the server's stream (a widget cannot load from a busy kernel, and the output
 * of a request goes only to the page that sent it). On the page that sent it, the cell's own live
 * widget shows the run and nothing is drawn (runs.ts, restoreDecision).
 *
 * The display goes after the cell's output area, keeps the run's final record once it ends, and
 * goes when the cell runs again. A run whose cell is not in the notebook as this page loaded it
 * (deleted, or never saved) shows above the notebook instead.
 *
 * Also: a notebook opened at another tab's request (openRun.ts) selects the run's cell.
 */
export const runDisplaysPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:run-displays',
  description: "A cell's run shown again after a reload, drawn from the server's stream.",
  autoStart: true,
  requires: [ITorchlab],
  optional: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, torchlab: ITorchlab, tracker: INotebookTracker | null) => {
    if (!tracker) {
      return;
    }
    const { model } = torchlab;
    // (notebook panel id, cell id) -> the view drawn there
    const views = new Map<string, { view: RunView; holder: Widget | null }>();
    const loaded = new WeakSet<NotebookPanel>();
    let last: ISnapshot | null = null;

    const remove = (key: string) => {
      const entry = views.get(key);
      if (entry) {
        entry.view.remove();
        entry.holder?.dispose();
        views.delete(key);
      }
    };

    const update = () => {
      const snapshot = model.snapshot;
      if (!snapshot || snapshot === last) {
        return;
      }
      last = snapshot;
      tracker.forEach(panel => {
        const kernelId = panel.sessionContext.session?.kernel?.id;
        if (!kernelId || !loaded.has(panel)) {
          return;
        }
        const kernel = snapshot.kernels.find(k => k.id === kernelId);
        for (const [cellId, runs] of runsByCell(kernel?.runs ?? [])) {
          const key = `${panel.id}:${cellId}`;
          const cell = panel.content.widgets.find(c => c.model.id === cellId) ?? null;
          const drawn = views.has(key);
          const shown = restoreDecision(runs, cell ? ownMsgId(cell) : null, drawn);
          if (!shown) {
            continue;
          }
          const entry = views.get(key) ?? place(panel, cell);
          views.set(key, entry);
          entry.view.render(shown);
        }
      });
    };

    /** Put a new view after the cell's output area, or above the notebook without the cell. */
    function place(panel: NotebookPanel, cell: Cell | null) {
      const view = new RunView();
      if (cell) {
        const outputs = cell.node.querySelector(':scope > .jp-Cell-outputWrapper');
        cell.node.insertBefore(view.node, outputs?.nextSibling ?? null);
        return { view, holder: null };
      }
      const holder = new Widget();
      holder.addClass('jp-torchlab-run-view-header');
      holder.node.append(view.node);
      panel.contentHeader.addWidget(holder);
      return { view, holder };
    }

    NotebookActions.executionScheduled.connect((_, { notebook, cell }) => {
      const panel = tracker.find(p => p.content === notebook);
      if (panel) {
        remove(`${panel.id}:${cell.model.id}`); // the cell runs again: its own output follows
      }
    });

    const watch = (panel: NotebookPanel) => {
      void revealRequested(panel);
      void panel.context.ready.then(() => {
        loaded.add(panel);
        last = null; // draw now, from the latest document
        update();
      });
      panel.sessionContext.kernelChanged.connect(() => {
        last = null;
        update();
      });
      panel.disposed.connect(() => {
        for (const key of Array.from(views.keys())) {
          if (key.startsWith(`${panel.id}:`)) {
            remove(key);
          }
        }
      });
    };
    tracker.forEach(watch);
    tracker.widgetAdded.connect((_, panel) => watch(panel));
    model.changed.connect(update);
    const needed = () => model.setNeeded('run-displays', tracker.size > 0);
    tracker.widgetAdded.connect(needed);
    tracker.currentChanged.connect(needed);
    needed();
  }
};

/** The msg_id of the execute request this page sent for the cell, if it sent one. */
function ownMsgId(cell: Cell): string | null {
  if (cell.model.type !== 'code') {
    return null;
  }
  const future = (cell as CodeCell).outputArea?.future;
  try {
    return future?.msg?.header?.msg_id ?? null;
  } catch {
    return null; // a future disposed along with its kernel connection
  }
}
