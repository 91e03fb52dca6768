/**
 * jupyter-torchlab's JupyterLab and Notebook 7 extension: small plugins around one shared model.
 *
 * - core: the metrics model (one stream or poll for the page) and the settings (ITorchlab);
 * - tutorial: the launcher card, palette and Help-menu command that open the tutorial;
 * - panel: the monitor side panel and its command;
 * - status: the status bar item (JupyterLab only: it needs the status bar);
 * - deaths: a notification that explains a kernel that died;
 * - long-cell: a notification when a long cell ends while its notebook is not in view;
 * - gpu-idle: a notification for kernels idle on GPU memory ("Free it"), and their culling;
 * - run-notify: a notification when a published run (tl.progress, tqdm, tl.fit) ends, fails or
 *   is interrupted, with "Go to cell" (openRun.ts);
 * - run-displays: a cell's run drawn again from the server's stream after a reload (runView.ts).
 * - cell-cost: under each cell, what it cost (time, peak memory, GPU memory, CPU), kept in its
 *   metadata; the panel lists the notebook's cells by cost (cellCosts.ts).
 * - memory-guard: where a notebook is open, why TorchlabExtension.memory_guard interrupted it.
 * Every plugin but core degrades to what the host application offers.
 */
import type { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { cellCostPlugin } from './plugins/cellCost';
import { corePlugin } from './plugins/core';
import { deathsPlugin } from './plugins/deaths';
import { gpuIdlePlugin } from './plugins/gpuIdle';
import { longCellPlugin } from './plugins/longCell';
import { memoryGuardPlugin } from './plugins/memoryGuard';
import { panelPlugin } from './plugins/panel';
import { runDisplaysPlugin } from './plugins/runDisplays';
import { runNotifyPlugin } from './plugins/runNotify';
import { statusPlugin } from './plugins/status';
import { tutorialPlugin } from './plugins/tutorial';

export { CommandIDs, ITorchlab } from './tokens';

const plugins: JupyterFrontEndPlugin<any>[] = [
  corePlugin,
  cellCostPlugin,
  tutorialPlugin,
  panelPlugin,
  statusPlugin,
  deathsPlugin,
  longCellPlugin,
  gpuIdlePlugin,
  memoryGuardPlugin,
  runNotifyPlugin,
  runDisplaysPlugin
];

export default plugins;
