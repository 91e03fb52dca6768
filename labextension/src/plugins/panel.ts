import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { INotebookTracker } from '@jupyterlab/notebook';

import { torchlabIcon } from '../icons';
import { makeKernelActions } from '../kernelActions';
import { openRun } from '../openRun';
import { MonitorPanel } from '../panel';
import { CommandIDs, ICellCosts, ITorchlab } from '../tokens';

/** The monitor panel (runs, host, GPUs, every kernel) and the command that opens it. */
export const panelPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:panel',
  description: 'A side panel with the host, every GPU and every kernel (interrupt, shut down).',
  autoStart: true,
  requires: [ITorchlab],
  optional: [ICommandPalette, IMainMenu, ILayoutRestorer, ILabShell, INotebookTracker, ICellCosts],
  activate: (
    app: JupyterFrontEnd,
    torchlab: ITorchlab,
    palette: ICommandPalette | null,
    mainMenu: IMainMenu | null,
    restorer: ILayoutRestorer | null,
    labShell: ILabShell | null,
    tracker: INotebookTracker | null,
    cellCosts: ICellCosts | null
  ) => {
    const { commands, shell } = app;
    const { model, settings } = torchlab;
    const actions = makeKernelActions(app, torchlab);
    const panel = new MonitorPanel({
      model,
      actions,
      showGpu: () => settings.showGpu,
      onVisibilityChanged: visible => model.setNeeded('panel', visible),
      openRun: run => void openRun(app, tracker, run),
      cellCosts
    });
    torchlab.settingsChanged.connect(() => panel.update());
    let panelAdded = false;
    const addPanel = () => {
      if (!panelAdded) {
        shell.add(panel, 'right', { rank: 900, type: 'PyTorch Monitor' });
        panelAdded = true;
      }
    };
    commands.addCommand(CommandIDs.openMonitor, {
      label: 'PyTorch kernel monitor',
      caption: 'Show CPU, memory and GPU use and every kernel, with interrupt and shut down',
      icon: args => (args['isPalette'] ? undefined : torchlabIcon),
      execute: () => {
        addPanel();
        (labShell ?? shell).activateById(panel.id);
        return panel;
      }
    });
    palette?.addItem({ command: CommandIDs.openMonitor, category: 'PyTorch' });
    mainMenu?.helpMenu.addGroup([{ command: CommandIDs.openMonitor }], 5);
    if (labShell) {
      // JupyterLab: a tab in the right side bar, always there. Notebook 7 adds it on demand.
      addPanel();
      restorer?.add(panel, 'jupyter-torchlab-monitor');
    }
  }
};
