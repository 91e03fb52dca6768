import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { deathMessage } from '../format';
import { CommandIDs, ITorchlab } from '../tokens';

/**
 * Say why a kernel died, where it happens: a notification naming the notebook, the cause (the
 * out-of-memory killer at 23.8 GiB of a 24 GiB limit, a signal, an exit status) and what to do.
 * JupyterLab itself only says the kernel "appears to have died".
 */
export const deathsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:deaths',
  description: 'A notification that explains a kernel that died (out of memory, a signal...).',
  autoStart: true,
  requires: [ITorchlab],
  optional: [INotebookTracker],
  activate: (app: JupyterFrontEnd, torchlab: ITorchlab, tracker: INotebookTracker | null) => {
    const { model } = torchlab;
    // events from before this page was opened were someone else's news
    const since = Date.now() / 1000 - 5;
    const seen = new Set<string>();
    model.changed.connect(() => {
      for (const death of model.snapshot?.events ?? []) {
        if (seen.has(death.id)) {
          continue;
        }
        seen.add(death.id);
        if (death.time < since) {
          continue;
        }
        Notification.error(deathMessage(death), {
          autoClose: false,
          actions: [
            {
              label: 'Open the monitor',
              callback: () => void app.commands.execute(CommandIDs.openMonitor)
            }
          ]
        });
      }
    });
    // listen while a notebook is open: that is where kernels die
    const update = () => model.setNeeded('deaths', tracker ? tracker.size > 0 : true);
    tracker?.widgetAdded.connect(update);
    tracker?.currentChanged.connect(update);
    update();
  }
};
