import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import type { Widget } from '@lumino/widgets';

import { createTutorial } from '../handler';
import { torchlabIcon } from '../icons';
import { CommandIDs, ITorchlab } from '../tokens';

/**
 * The tutorial command: a launcher card, a palette entry and a Help-menu item (Notebook 7 has
 * no launcher). It resolves to the opened notebook, so the launcher that was clicked closes
 * itself and the notebook takes its place, as with JupyterLab's own cards.
 */
export const tutorialPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:tutorial',
  description: 'Copy the bundled PyTorch classifier tutorial into the workspace and open it.',
  autoStart: true,
  requires: [ITorchlab],
  optional: [ILauncher, ICommandPalette, IMainMenu, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    torchlab: ITorchlab,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    mainMenu: IMainMenu | null,
    fileBrowser: IDefaultFileBrowser | null
  ) => {
    const { commands } = app;
    commands.addCommand(CommandIDs.createTutorial, {
      label: 'PyTorch classifier tutorial',
      caption: 'Copy the bundled CIFAR-10 classifier tutorial into the current folder and open it',
      icon: args => (args['isPalette'] ? undefined : torchlabIcon),
      execute: async args => {
        const dir = (args['cwd'] as string | undefined) ?? fileBrowser?.model.path ?? '';
        try {
          const path = await createTutorial(dir, torchlab.serverSettings);
          const widget: Widget | undefined = await commands.execute('docmanager:open', {
            path,
            factory: 'Notebook'
          });
          return widget;
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
    mainMenu?.helpMenu.addGroup([{ command: CommandIDs.createTutorial }], 5);
  }
};
