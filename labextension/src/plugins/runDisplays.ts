import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import type { CodeCell } from '@jupyterlab/cells';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Panel, Widget } from '@lumino/widgets';

import { revealRequested } from '../openRun';
import {
  executionKey,
  placeholderPlan,
  restoreDecision,
  runsByCell,
  WIDGET_VIEW_MIME
} from '../runs';
import { RunView } from '../runView';
import { ITorchlab } from '../tokens';
import type { ISnapshot } from '../types';

type Cell = NotebookPanel['content']['widgets'][number];

/** The class that hides a widget-view output that cannot render while its run is drawn. */
const HIDDEN_CLASS = 'jp-torchlab-widget-placeholder-hidden';

interface IEntry {
  view: RunView;
  holder: Widget | null;
  cell: Cell | null;
  /** The cell's output children (prompt and widget view) hidden while the run is drawn. */
  hidden: Set<Widget>;
  observer: MutationObserver | null;
  /** (panel id, cell id, execution) of the drawn run. */
  execution: string;
}

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
 * While the run is drawn, the cell's widget views that cannot render (a saved notebook's
 * "Loading widget...": the widget manager cannot restore models from a kernel busy in the cell)
 * are hidden; one that renders later shows again, and once all have rendered the real widgets
 * win and the drawn display goes (runs.ts, placeholderPlan).
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
    const views = new Map<string, IEntry>();
    // (panel id, cell id, execution) whose real widgets rendered: not drawn again
    const widgetWon = new Set<string>();
    const loaded = new WeakSet<NotebookPanel>();
    let last: ISnapshot | null = null;

    const remove = (key: string) => {
      const entry = views.get(key);
      if (entry) {
        entry.observer?.disconnect();
        for (const child of entry.hidden) {
          child.removeClass(HIDDEN_CLASS);
        }
        entry.view.remove();
        entry.holder?.dispose();
        views.delete(key);
      }
    };

    /** Hide the cell's widget views that cannot render; let the real widgets win once they do. */
    const syncPlaceholders = (key: string) => {
      const entry = views.get(key);
      if (!entry?.cell) {
        return;
      }
      const outputs = widgetViews(entry.cell);
      const plan = placeholderPlan(
        outputs.map(o => ({ rendered: o.rendered, hidden: entry.hidden.has(o.child) }))
      );
      if (plan.widgetWins) {
        widgetWon.add(entry.execution);
        remove(key);
        return;
      }
      for (const i of plan.hide) {
        outputs[i].child.addClass(HIDDEN_CLASS);
        entry.hidden.add(outputs[i].child);
      }
      for (const i of plan.show) {
        outputs[i].child.removeClass(HIDDEN_CLASS);
        entry.hidden.delete(outputs[i].child);
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
          const wonKey = `${key}:${executionKey(shown[0])}`;
          if (widgetWon.has(wonKey)) {
            continue;
          }
          const entry = views.get(key) ?? place(panel, cell);
          entry.execution = wonKey;
          if (!views.has(key)) {
            views.set(key, entry);
            const area = cell ? outputAreaOf(cell) : null;
            if (area) {
              // the widget renders when the manager restores its model: react at once
              entry.observer = new MutationObserver(() => syncPlaceholders(key));
              entry.observer.observe(area.node, { childList: true, subtree: true });
            }
          }
          entry.view.render(shown);
          syncPlaceholders(key);
        }
      });
    };

    /** Put a new view after the cell's output area, or above the notebook without the cell. */
    function place(panel: NotebookPanel, cell: Cell | null): IEntry {
      const view = new RunView();
      const entry: IEntry = {
        view,
        holder: null,
        cell,
        hidden: new Set(),
        observer: null,
        execution: ''
      };
      if (cell) {
        const outputs = cell.node.querySelector(':scope > .jp-Cell-outputWrapper');
        cell.node.insertBefore(view.node, outputs?.nextSibling ?? null);
        return entry;
      }
      entry.holder = new Widget();
      entry.holder.addClass('jp-torchlab-run-view-header');
      entry.holder.node.append(view.node);
      panel.contentHeader.addWidget(entry.holder);
      return entry;
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

function outputAreaOf(cell: Cell): CodeCell['outputArea'] | null {
  return cell.model.type === 'code' ? (cell as CodeCell).outputArea ?? null : null;
}

/**
 * The cell's ipywidgets views: each output child whose renderer is for the widget-view mime type
 * (the renderer keeps its mimeType, as every IRenderMime renderer does), and whether it drew a
 * view. ipywidgets' renderer is a Panel that holds only text ("Loading widget...", "Error
 * displaying widget: model not found") until the model is there, then the view's widget. A view
 * ipywidgets hid itself (its widget was closed from the kernel) is not counted.
 */
function widgetViews(cell: Cell): { child: Widget; rendered: boolean }[] {
  const found: { child: Widget; rendered: boolean }[] = [];
  for (const child of outputAreaOf(cell)?.widgets ?? []) {
    for (const output of (child as Panel).widgets ?? []) {
      const mimeType = (output as { mimeType?: unknown }).mimeType;
      if (mimeType === WIDGET_VIEW_MIME && !output.isHidden) {
        found.push({ child, rendered: output.node.childElementCount > 0 });
      }
    }
  }
  return found;
}

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
