/**
 * What each cell cost, kept in the notebook: the page side. The server measures every kernel's
 * cells from its start (while `TorchlabExtension.cell_costs` is on); the page only fetches them.
 *
 * For every open notebook, the execute requests its kernel connection sends are matched to
 * their cells (JupyterLab puts `cellId` in the request's metadata). When a request's idle comes
 * back, the server's record of it is fetched (GET torchlab/api/cells, which waits for the end to
 * be read) and stored in the cell's metadata under `torchlab`, so saving keeps it. Each code cell
 * with such metadata shows one line under it, drawn from the metadata alone, so a reloaded or
 * shared notebook shows it too; its colour (near the limits) is drawn again whenever the limits in
 * the page's metrics change, e.g. when the first snapshot arrives after a reload. Turned off
 * (setting `cellCost`), nothing is connected, nothing is requested, and the lines go.
 */
import type { ICellModel } from '@jupyterlab/cells';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import {
  costDetail,
  costFromRecord,
  costLine,
  costPressure,
  ICellCost,
  ICellRecord,
  IRankedCell,
  METADATA_KEY,
  pressureLimitsKey,
  readCost,
  watchLimits
} from './cellCost';
import { requestAPI } from './handler';
import type { MetricsModel } from './model';

const FOOTER_CLASS = 'jp-torchlab-cellcost';
/** Seconds the server may take to read a cell's end after its idle (it usually takes ms). */
const WAIT = 10;

type Cleanup = () => void;

export interface ICellCostsOptions {
  tracker: INotebookTracker;
  model: MetricsModel;
  serverSettings: ServerConnection.ISettings;
}

/** Follows every notebook's executions, stores their cost, draws the lines. */
export class CellCosts {
  constructor(options: ICellCostsOptions) {
    this._options = options;
    options.tracker.widgetAdded.connect((_, panel) => {
      if (this._enabled) {
        this._attach(panel);
      }
    });
    options.tracker.currentChanged.connect(() => this._changed.emit());
    // a footer's colour weighs the cell against the limits of the latest snapshot: lines drawn
    // before the first one (a reload) or under other limits are drawn again when they change
    watchLimits(options.model, () => this._draws.forEach(draw => draw()));
  }

  /** Emitted when the current notebook's costs may have changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get enabled(): boolean {
    return this._enabled;
  }

  /** Turn it on or off; off disconnects everything and removes the lines. */
  setEnabled(on: boolean): void {
    if (on === this._enabled) {
      return;
    }
    this._enabled = on;
    if (on) {
      this._options.tracker.forEach(panel => this._attach(panel));
    } else {
      for (const cleanups of this._attached.values()) {
        cleanups.forEach(cleanup => cleanup());
      }
      this._attached.clear();
    }
    this._changed.emit();
  }

  /** The current notebook's cells that have a cost, in notebook order. */
  currentCells(): IRankedCell[] {
    const panel = this._options.tracker.currentWidget;
    const cells = panel?.content.model?.cells;
    if (!this._enabled || !cells) {
      return [];
    }
    const ranked: IRankedCell[] = [];
    for (let index = 0; index < cells.length; index++) {
      const cell = cells.get(index);
      const cost = readCost(cell.getMetadata(METADATA_KEY));
      if (cost && cell.type === 'code') {
        const label = cell.sharedModel.getSource().split('\n', 1)[0] ?? '';
        ranked.push({ id: cell.id, index, label, cost });
      }
    }
    return ranked;
  }

  /** Scroll the current notebook to a cell and select it. */
  async showCell(id: string): Promise<void> {
    const panel = this._options.tracker.currentWidget;
    if (!panel) {
      return;
    }
    const notebook = panel.content;
    const index = notebook.widgets.findIndex(cell => cell.model.id === id);
    if (index < 0) {
      return;
    }
    notebook.deselectAll();
    notebook.activeCellIndex = index;
    await notebook.scrollToCell(notebook.widgets[index], 'center');
  }

  private _attach(panel: NotebookPanel): void {
    if (this._attached.has(panel)) {
      return;
    }
    const cleanups: Cleanup[] = [];
    this._attached.set(panel, cleanups);
    cleanups.push(() => this._draws.delete(panel));
    const pending = new Map<string, string>(); // execute request msg_id -> cell id
    const watched = new Map<ICellModel, Cleanup>();

    const draw = () => {
      if (!this._enabled || panel.isDisposed) {
        return;
      }
      for (const cell of panel.content.widgets) {
        drawFooter(cell.node, cell.model, this._options.model);
      }
    };
    this._draws.set(panel, draw);
    const watchCells = () => {
      const cells = panel.content.model?.cells;
      if (!cells) {
        return;
      }
      const present = new Set<ICellModel>();
      for (let i = 0; i < cells.length; i++) {
        const model = cells.get(i);
        present.add(model);
        if (!watched.has(model)) {
          const onMetadata = (_: ICellModel, change: { key: string }) => {
            if (change.key === METADATA_KEY) {
              const widget = panel.content.widgets.find(w => w.model === model);
              if (widget) {
                drawFooter(widget.node, model, this._options.model);
              }
              if (this._options.tracker.currentWidget === panel) {
                this._changed.emit();
              }
            }
          };
          model.metadataChanged.connect(onMetadata);
          watched.set(model, () => model.metadataChanged.disconnect(onMetadata));
        }
      }
      for (const [model, unwatch] of watched) {
        if (!present.has(model)) {
          unwatch();
          watched.delete(model);
        }
      }
      // the new cells' widgets exist once the notebook has handled the same change
      setTimeout(draw, 0);
    };

    let kernel: Kernel.IKernelConnection | null = null;
    const onMessage = (_: Kernel.IKernelConnection, args: Kernel.IAnyMessageArgs) => {
      const { msg, direction } = args;
      if (direction === 'send' && msg.header.msg_type === 'execute_request') {
        const cellId = (msg.metadata as { cellId?: unknown }).cellId;
        if (typeof cellId === 'string') {
          pending.set(msg.header.msg_id, cellId);
        }
        return;
      }
      if (direction !== 'recv' || msg.header.msg_type !== 'status') {
        return;
      }
      const state = (msg as KernelMessage.IStatusMsg).content.execution_state;
      const parent = (msg.parent_header as { msg_id?: string }).msg_id;
      const cellId = parent !== undefined ? pending.get(parent) : undefined;
      if (state !== 'idle' || cellId === undefined || parent === undefined || !kernel) {
        return;
      }
      pending.delete(parent);
      void this._fetch(panel, kernel.id, parent, cellId);
    };
    const onKernel = () => {
      kernel?.anyMessage.disconnect(onMessage);
      pending.clear();
      kernel = panel.sessionContext.session?.kernel ?? null;
      if (kernel) {
        kernel.anyMessage.connect(onMessage);
      }
    };
    panel.sessionContext.kernelChanged.connect(onKernel);
    cleanups.push(() => {
      panel.sessionContext.kernelChanged.disconnect(onKernel);
      kernel?.anyMessage.disconnect(onMessage);
      pending.clear();
    });
    void panel.sessionContext.ready.then(() => {
      if (this._attached.get(panel) === cleanups) {
        onKernel();
      }
    });

    const onCells = () => watchCells();
    void panel.context.ready.then(() => {
      if (this._attached.get(panel) !== cleanups || !panel.content.model) {
        return;
      }
      panel.content.model.cells.changed.connect(onCells);
      cleanups.push(() => panel.content.model?.cells.changed.disconnect(onCells));
      watchCells();
    });
    cleanups.push(() => {
      watched.forEach(unwatch => unwatch());
      watched.clear();
      panel.node.querySelectorAll(`.${FOOTER_CLASS}`).forEach(node => node.remove());
    });
    panel.disposed.connect(() => {
      cleanups.forEach(cleanup => cleanup());
      this._attached.delete(panel);
    });
  }

  private async _fetch(
    panel: NotebookPanel,
    kernelId: string,
    msgId: string,
    cellId: string
  ): Promise<void> {
    let record: ICellRecord | null = null;
    try {
      const reply = await requestAPI<{ cell: ICellRecord | null }>(
        `cells?kernel=${encodeURIComponent(kernelId)}&msg_id=${encodeURIComponent(msgId)}&wait=${WAIT}`,
        {},
        this._options.serverSettings
      );
      record = reply.cell;
    } catch (error) {
      console.debug('jupyter-torchlab: no cost for a cell', error);
      return;
    }
    const cells = panel.content.model?.cells;
    if (!record || !cells || !this._enabled || panel.isDisposed) {
      return;
    }
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      if (cell.id === cellId) {
        cell.setMetadata(METADATA_KEY, costFromRecord(record) as any);
        return;
      }
    }
  }

  private _options: ICellCostsOptions;
  private _enabled = false;
  private _attached = new Map<NotebookPanel, Cleanup[]>();
  private _draws = new Map<NotebookPanel, () => void>(); // each attached panel's footers
  private _changed = new Signal<this, void>(this);
}

/** Draw, update or remove the line under one cell from its metadata. */
function drawFooter(node: HTMLElement, model: ICellModel, metrics: MetricsModel): void {
  let footer = node.querySelector<HTMLElement>(`:scope > .${FOOTER_CLASS}`);
  const cost: ICellCost | null =
    model.type === 'code' ? readCost(model.getMetadata(METADATA_KEY)) : null;
  if (!cost) {
    footer?.remove();
    return;
  }
  if (!footer) {
    footer = document.createElement('div');
    footer.className = FOOTER_CLASS;
  }
  if (footer !== node.lastElementChild) {
    node.appendChild(footer); // last: the cell's own parts are inserted before it
  }
  const pressure = costPressure(cost, metrics.snapshot);
  footer.textContent = costLine(cost);
  footer.title = costDetail(cost);
  footer.dataset.pressure = pressure;
  footer.dataset.limits = pressureLimitsKey(metrics.snapshot) ?? ''; // what it was weighed against
  footer.dataset.wall = String(cost.wall_s);
  footer.classList.toggle('jp-torchlab-cellcost-warn', pressure === 'warn');
  footer.classList.toggle('jp-torchlab-cellcost-danger', pressure === 'danger');
}
