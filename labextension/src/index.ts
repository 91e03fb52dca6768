import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { INotebookTracker } from '@jupyterlab/notebook';
import { KernelAPI, ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Signal } from '@lumino/signaling';

import { basename } from './format';
import { createTutorial, ServerTransport } from './handler';
import { torchlabIcon } from './icons';
import { MetricsModel } from './model';
import { MonitorPanel } from './panel';
import { KernelStatusItem } from './status';
import type { IKernel } from './types';

const PLUGIN_ID = 'jupyter-torchlab:plugin';

export namespace CommandIDs {
  export const createTutorial = 'torchlab:create-tutorial';
  export const openMonitor = 'torchlab:open-monitor';
}

interface ISettings {
  refreshInterval: number;
  showGpu: boolean;
  showStatusItem: boolean;
}

const DEFAULTS: ISettings = { refreshInterval: 2, showGpu: true, showStatusItem: true };

/**
 * Everything but the commands is optional, so the same plugin loads in JupyterLab (launcher,
 * status bar, side panel) and in Notebook 7 (palette and Help menu).
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'PyTorch tutorial launcher, kernel status bar item and kernel/GPU monitor panel.',
  autoStart: true,
  optional: [
    ILauncher,
    ICommandPalette,
    IMainMenu,
    IStatusBar,
    INotebookTracker,
    IDefaultFileBrowser,
    ISettingRegistry,
    ILayoutRestorer,
    ILabShell
  ],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    mainMenu: IMainMenu | null,
    statusBar: IStatusBar | null,
    tracker: INotebookTracker | null,
    fileBrowser: IDefaultFileBrowser | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    labShell: ILabShell | null
  ) => {
    const { commands, shell } = app;
    const serverSettings = app.serviceManager.serverSettings ?? ServerConnection.makeSettings();
    const settings: ISettings = { ...DEFAULTS };
    const settingsChanged = new Signal<object, void>({});

    const model = new MetricsModel({
      transport: new ServerTransport(serverSettings),
      refreshInterval: settings.refreshInterval * 1000,
      historySeconds: 120
    });
    const onVisibility = () => model.setHidden(document.visibilityState === 'hidden');
    document.addEventListener('visibilitychange', onVisibility);
    onVisibility();

    // --- the tutorial command: launcher, palette, Help menu --------------------------------
    commands.addCommand(CommandIDs.createTutorial, {
      label: 'PyTorch classifier tutorial',
      caption: 'Copy the bundled CIFAR-10 classifier tutorial into the current folder and open it',
      icon: args => (args['isPalette'] ? undefined : torchlabIcon),
      execute: async args => {
        const dir = (args['cwd'] as string | undefined) ?? fileBrowser?.model.path ?? '';
        try {
          const path = await createTutorial(dir, serverSettings);
          await commands.execute('docmanager:open', { path, factory: 'Notebook' });
          return path;
        } catch (error) {
          await showErrorMessage('Could not create the PyTorch tutorial', error as Error);
          return undefined;
        }
      }
    });
    // The launcher draws Notebook-section cards from a kernel icon URL, not from a LabIcon.
    launcher?.add({
      command: CommandIDs.createTutorial,
      category: 'Notebook',
      rank: 10,
      kernelIconUrl: `data:image/svg+xml,${encodeURIComponent(torchlabIcon.svgstr)}`
    });
    palette?.addItem({ command: CommandIDs.createTutorial, category: 'PyTorch' });

    // --- the monitor panel ----------------------------------------------------------------
    const actions = {
      interrupt: async (kernel: IKernel) => {
        try {
          await KernelAPI.interruptKernel(kernel.id, serverSettings);
          Notification.info(`Interrupted ${kernelLabel(kernel)}`, { autoClose: 3000 });
        } catch (error) {
          await showErrorMessage('Could not interrupt the kernel', error as Error);
        }
      },
      shutdown: async (kernel: IKernel) => {
        const result = await showDialog({
          title: 'Shut down kernel?',
          body: `Shut down the kernel of ${kernelLabel(kernel)}? Its variables are lost.`,
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Shut down' })]
        });
        if (!result.button.accept) {
          return;
        }
        try {
          // Through the kernel manager, so open notebooks learn that their kernel is gone.
          await app.serviceManager.kernels.shutdown(kernel.id);
        } catch (error) {
          await showErrorMessage('Could not shut down the kernel', error as Error);
        }
      },
      open: (kernel: IKernel) => {
        if (kernel.path) {
          void commands.execute('docmanager:open', { path: kernel.path });
        }
      }
    };
    const panel = new MonitorPanel({
      model,
      actions,
      showGpu: () => settings.showGpu,
      onVisibilityChanged: visible => model.setNeeded('panel', visible)
    });
    settingsChanged.connect(() => panel.update());
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
      }
    });
    palette?.addItem({ command: CommandIDs.openMonitor, category: 'PyTorch' });
    mainMenu?.helpMenu.addGroup(
      [{ command: CommandIDs.createTutorial }, { command: CommandIDs.openMonitor }],
      5
    );
    if (labShell) {
      // JupyterLab: a tab in the right side bar, always there. Notebook 7 adds it on demand.
      addPanel();
      restorer?.add(panel, 'jupyter-torchlab-monitor');
    }

    // --- the status bar item --------------------------------------------------------------
    if (statusBar && tracker) {
      const currentKernel = () => {
        const kernel = tracker.currentWidget?.sessionContext.session?.kernel;
        return kernel ? { id: kernel.id, status: kernel.status } : null;
      };
      const item = new KernelStatusItem({
        model,
        currentKernel,
        showGpu: () => settings.showGpu,
        onClick: () => void commands.execute(CommandIDs.openMonitor)
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
      settingsChanged.connect(refresh);
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: 5,
        isActive,
        activeStateChanged: activeChanged
      });
      refresh();
    }

    // --- settings -------------------------------------------------------------------------
    if (settingRegistry) {
      const load = (loaded: ISettingRegistry.ISettings) => {
        const composite = loaded.composite as Partial<ISettings>;
        settings.refreshInterval = Number(composite.refreshInterval ?? DEFAULTS.refreshInterval);
        settings.showGpu = composite.showGpu ?? DEFAULTS.showGpu;
        settings.showStatusItem = composite.showStatusItem ?? DEFAULTS.showStatusItem;
        model.refreshInterval = settings.refreshInterval * 1000;
        settingsChanged.emit();
      };
      settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          load(loaded);
          loaded.changed.connect(load);
        })
        .catch(reason => console.warn('jupyter-torchlab: could not load settings', reason));
    }
  }
};

function kernelLabel(kernel: IKernel): string {
  return kernel.path ? basename(kernel.path) : `kernel ${kernel.id.slice(0, 8)}`;
}

export default plugin;
