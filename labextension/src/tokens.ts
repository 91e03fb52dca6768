import type { ServerConnection } from '@jupyterlab/services';
import { Token } from '@lumino/coreutils';
import type { ISignal } from '@lumino/signaling';

import type { CellCosts } from './cellCosts';
import type { MetricsModel } from './model';

/** The user's settings of jupyter-torchlab (schema/plugin.json). */
export interface ISettings {
  refreshInterval: number;
  showGpu: boolean;
  showStatusItem: boolean;
  longCellNotification: boolean;
  longCellSeconds: number;
  longCellBrowserNotification: boolean;
  runNotification: boolean;
  cellCost: boolean;
}

export const DEFAULT_SETTINGS: ISettings = {
  refreshInterval: 2,
  showGpu: true,
  showStatusItem: true,
  longCellNotification: true,
  longCellSeconds: 60,
  longCellBrowserNotification: true,
  runNotification: true,
  cellCost: true
};

/**
 * What the plugins share: one metrics model (one stream or poll for the whole page), the
 * settings, and the server connection. The core plugin provides it.
 */
export interface ITorchlab {
  readonly model: MetricsModel;
  readonly settings: Readonly<ISettings>;
  readonly settingsChanged: ISignal<ITorchlab, void>;
  readonly serverSettings: ServerConnection.ISettings;
}

export const ITorchlab = new Token<ITorchlab>(
  'jupyter-torchlab:ITorchlab',
  'The shared metrics model and settings of jupyter-torchlab.'
);

/** What each cell cost (the cell-cost plugin): the monitor panel lists the current notebook's. */
export type ICellCosts = CellCosts;

export const ICellCosts = new Token<ICellCosts>(
  'jupyter-torchlab:ICellCosts',
  "What each cell cost: the current notebook's measured cells, and going to one."
);

export namespace CommandIDs {
  export const createTutorial = 'torchlab:create-tutorial';
  export const openMonitor = 'torchlab:open-monitor';
}
