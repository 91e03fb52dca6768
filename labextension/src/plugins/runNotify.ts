import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { endNotices, RunsSeenStore } from '../endNotices';
import { openRun } from '../openRun';
import { executionKey, runEndMessage, RunWatch } from '../runs';
import { ITorchlab } from '../tokens';
import type { IRun, ISnapshot } from '../types';

/**
 * A notification when a run ends, fails (with its error line) or is interrupted, on every page
 * that was open while it ran: its notebook need not be open in any tab. Once per run per page,
 * with "Go to cell", which opens the notebook at the run's cell. Nothing while the user is
 * looking at that notebook on this page: the cell says it there. (setting runNotification)
 *
 * A run that ended while no page of this server was open (the laptop closed) is told when a page
 * next opens, once across pages and reloads: the pages remember in localStorage, per server, when
 * they last looked and which runs they told (RunsSeenStore). The server keeps ended runs while
 * their kernel lives (a day at most).
 *
 * A cell execution gets one notification: where long-cell told the same execution's end first,
 * the run's message takes the place of that one (endNotices.ts).
 */
export const runNotifyPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:run-notify',
  description: 'A notification when a training run or progress bar ends, fails or is interrupted.',
  autoStart: true,
  requires: [ITorchlab],
  optional: [INotebookTracker],
  activate: (app: JupyterFrontEnd, torchlab: ITorchlab, tracker: INotebookTracker | null) => {
    const { model, settings } = torchlab;
    const watch = new RunWatch(new RunsSeenStore(storage(), PageConfig.getBaseUrl()));
    let last: ISnapshot | null = null;
    model.changed.connect(() => {
      const snapshot = model.snapshot;
      if (!snapshot || snapshot === last) {
        return;
      }
      last = snapshot;
      for (const run of watch.update(snapshot)) {
        if (settings.runNotification && (watch.missed(run) || !inView(app, tracker, run))) {
          notify(run);
        }
      }
    });

    function notify(run: IRun): void {
      const post =
        run.state === 'finished'
          ? Notification.success
          : run.state === 'failed'
            ? Notification.error
            : Notification.warning;
      const actions: Notification.IAction[] = run.path
        ? [{ label: 'Go to cell', callback: () => void openRun(app, tracker, run) }]
        : [];
      const execution = run.msg_id ? executionKey(run) : null;
      const action = endNotices.runEnded(execution);
      if (action.kind === 'replace') {
        // one notification for the execution; a dismissed one is not posted again
        Notification.update({
          id: action.id,
          message: runEndMessage(run),
          type: run.state === 'finished' ? 'success' : run.state === 'failed' ? 'error' : 'warning',
          autoClose: false,
          actions
        });
        endNotices.told(execution, 'run', action.id);
      } else if (action.kind === 'post') {
        endNotices.told(execution, 'run', post(runEndMessage(run), { autoClose: false, actions }));
      }
    }

    // listen on every page with a notebook (in Notebook 7 each notebook has its own page), and
    // while a run is watched
    const needed = () => model.setNeeded('run-notify', tracker ? tracker.size > 0 : true);
    tracker?.widgetAdded.connect(needed);
    tracker?.currentChanged.connect(needed);
    needed();
  }
};

/** Whether the user is looking at the run's notebook on this page now. */
function inView(app: JupyterFrontEnd, tracker: INotebookTracker | null, run: IRun): boolean {
  const panel = tracker?.currentWidget;
  return (
    !!panel &&
    panel.context.path === run.path &&
    app.shell.currentWidget === panel &&
    panel.isVisible &&
    document.visibilityState === 'visible' &&
    document.hasFocus()
  );
}

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage blocked by the browser's settings: missed runs are not told
  }
}
