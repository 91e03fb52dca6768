import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';

import { CellCosts } from '../cellCosts';
import { ICellCosts, ITorchlab } from '../tokens';

/**
 * What each cell cost, under each cell and kept in its metadata (cellCosts.ts); the monitor
 * panel lists the current notebook's cells by cost. The setting cellCost turns it off.
 */
export const cellCostPlugin: JupyterFrontEndPlugin<ICellCosts> = {
  id: 'jupyter-torchlab:cell-cost',
  description: 'Time, peak memory, GPU memory and CPU of each cell, under it and in the notebook.',
  autoStart: true,
  requires: [ITorchlab, INotebookTracker],
  provides: ICellCosts,
  activate: (app: JupyterFrontEnd, torchlab: ITorchlab, tracker: INotebookTracker) => {
    const costs = new CellCosts({
      tracker,
      model: torchlab.model,
      serverSettings: torchlab.serverSettings
    });
    const apply = () => costs.setEnabled(torchlab.settings.cellCost);
    torchlab.settingsChanged.connect(apply);
    apply();
    return costs;
  }
};
