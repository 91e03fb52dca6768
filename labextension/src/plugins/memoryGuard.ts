import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { guardMessage, guardNotices } from '../memoryGuard';
import { CommandIDs, ITorchlab } from '../tokens';

/**
 * Say why a kernel was interrupted by TorchlabExtension.memory_guard, on the page where its
 * notebook is open: "train.ipynb: interrupted at 2.8 GiB of a 3.0 GiB limit to save this kernel;
 * free memory, then continue".
 */
export const memoryGuardPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:memory-guard',
  description: 'A notification that says why the memory guard interrupted a kernel.',
  autoStart: true,
  requires: [ITorchlab],
  optional: [INotebookTracker],
  activate: (app: JupyterFrontEnd, torchlab: ITorchlab, tracker: INotebookTracker | null) => {
    const { model } = torchlab;
    const since = Date.now() / 1000 - 5; // interrupts from before this page opened are old news
    const told = new Set<string>();
    const openPaths = (): Set<string> | null => {
      if (!tracker) {
        return null;
      }
      const paths = new Set<string>();
      tracker.forEach(panel => paths.add(panel.context.path));
      return paths;
    };
    model.changed.connect(() => {
      for (const event of guardNotices(model.snapshot?.memory_guard, told, since, openPaths())) {
        Notification.warning(guardMessage(event), {
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
    // listen while a notebook is open: that is where the guard's news belongs
    const update = () => model.setNeeded('memoryGuard', tracker ? tracker.size > 0 : true);
    tracker?.widgetAdded.connect(update);
    tracker?.currentChanged.connect(update);
    update();
  }
};
