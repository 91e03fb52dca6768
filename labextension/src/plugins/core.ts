import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { Signal } from '@lumino/signaling';

import { ServerTransport } from '../handler';
import { MetricsModel } from '../model';
import { DEFAULT_SETTINGS, ISettings, ITorchlab } from '../tokens';
import { PAGE_CONFIG_KEY } from '../unavailable';

/** The id that owns the settings schema (schema/plugin.json). */
export const PLUGIN_ID = 'jupyter-torchlab:plugin';

/** The shared model and settings; every other plugin of ours requires it. */
export const corePlugin: JupyterFrontEndPlugin<ITorchlab> = {
  id: PLUGIN_ID,
  description: 'The metrics model and settings that the tutorial, panel and status bar share.',
  autoStart: true,
  provides: ITorchlab,
  optional: [ISettingRegistry],
  activate: (app: JupyterFrontEnd, settingRegistry: ISettingRegistry | null): ITorchlab => {
    const serverSettings = app.serviceManager.serverSettings ?? ServerConnection.makeSettings();
    const settings: ISettings = { ...DEFAULT_SETTINGS };
    const model = new MetricsModel({
      transport: new ServerTransport(serverSettings),
      refreshInterval: settings.refreshInterval * 1000,
      historySeconds: 120
    });
    // The server extension did not load: the server put why into the page (see unavailable.ts).
    const loadError = PageConfig.getOption(PAGE_CONFIG_KEY);
    if (loadError) {
      model.setUnavailable(loadError);
    }
    const onVisibility = () => model.setHidden(document.visibilityState === 'hidden');
    document.addEventListener('visibilitychange', onVisibility);
    onVisibility();

    const torchlab = {
      model,
      settings,
      serverSettings,
      settingsChanged: undefined as unknown as Signal<ITorchlab, void>
    };
    const changed = new Signal<ITorchlab, void>(torchlab);
    torchlab.settingsChanged = changed;

    if (settingRegistry) {
      const load = (loaded: ISettingRegistry.ISettings) => {
        const composite = loaded.composite as Partial<ISettings>;
        settings.refreshInterval = Number(
          composite.refreshInterval ?? DEFAULT_SETTINGS.refreshInterval
        );
        settings.showGpu = composite.showGpu ?? DEFAULT_SETTINGS.showGpu;
        settings.showStatusItem = composite.showStatusItem ?? DEFAULT_SETTINGS.showStatusItem;
        settings.longCellNotification =
          composite.longCellNotification ?? DEFAULT_SETTINGS.longCellNotification;
        settings.longCellSeconds = Number(
          composite.longCellSeconds ?? DEFAULT_SETTINGS.longCellSeconds
        );
        settings.longCellBrowserNotification =
          composite.longCellBrowserNotification ?? DEFAULT_SETTINGS.longCellBrowserNotification;
        settings.runNotification = composite.runNotification ?? DEFAULT_SETTINGS.runNotification;
        settings.cellCost = composite.cellCost ?? DEFAULT_SETTINGS.cellCost;
        model.refreshInterval = settings.refreshInterval * 1000;
        changed.emit();
      };
      settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          load(loaded);
          loaded.changed.connect(load);
        })
        .catch(reason => console.warn('jupyter-torchlab: could not load settings', reason));
    }
    return torchlab;
  }
};
