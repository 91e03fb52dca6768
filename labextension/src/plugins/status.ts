import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Signal } from '@lumino/signaling';

import { KernelStatusItem } from '../status';
import { CommandIDs, ITorchlab } from '../tokens';

/**
 * The status bar item: the current notebook's kernel, its state and what it costs.
 *
 * Both tokens are optional: Notebook 7 has no status bar, and a required token that nothing
 * provides is an activation error in the console of every page.
 */
export const statusPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:status',
  description: "The current notebook kernel's state, CPU, memory and GPU in the status bar.",
  autoStart: true,
  requires: [ITorchlab],
  optional: [IStatusBar, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    torchlab: ITorchlab,
    statusBar: IStatusBar | null,
    tracker: INotebookTracker | null
  ) => {
    if (!statusBar || !tracker) {
      return;
    }
    const { model, settings } = torchlab;
    const currentKernel = () => {
      const kernel = tracker.currentWidget?.sessionContext.session?.kernel;
      return kernel ? { id: kernel.id, status: kernel.status } : null;
    };
    const item = new KernelStatusItem({
      model,
      currentKernel,
      showGpu: () => settings.showGpu,
      onClick: () => void app.commands.execute(CommandIDs.openMonitor)
    });
    const activeChanged = new Signal<object, void>(item);
    const isActive = () => settings.showStatusItem && tracker.currentWidget !== null;
    const refresh = () => {
      model.setNeeded('status', isActive());
      activeChanged.emit();
      item.update();
    };
    let watched: INotebookTracker['currentWidget'] = null;
    tracker.currentChanged.connect((_, widget) => {
      if (watched) {
        watched.sessionContext.kernelChanged.disconnect(refresh);
        watched.sessionContext.statusChanged.disconnect(refresh);
      }
      watched = widget;
      widget?.sessionContext.kernelChanged.connect(refresh);
      widget?.sessionContext.statusChanged.connect(refresh);
      refresh();
    });
    torchlab.settingsChanged.connect(refresh);
    statusBar.registerStatusItem('jupyter-torchlab:status', {
      item,
      align: 'left',
      rank: 5,
      isActive,
      activeStateChanged: activeChanged
    });
    refresh();
  }
};
