import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import React from 'react';

import { CellCostList } from './cellCostList';
import { Meter } from './charts';
import { formatPercent, formatUsage, MISSING, ratioPercent } from './format';
import { torchlabIcon } from './icons';
import type { IKernelActions } from './kernelActions';
import { KernelTable } from './kernels';
import type { MetricsModel } from './model';
import { RunList } from './runList';
import type { ICellCosts } from './tokens';
import type { IGpu, IRun, ISnapshot } from './types';

export interface IMonitorPanelOptions {
  model: MetricsModel;
  actions: IKernelActions;
  showGpu: () => boolean;
  /** Called when the panel becomes visible or hidden, so the model can stand by. */
  onVisibilityChanged: (visible: boolean) => void;
  /** Open a run's notebook at its cell. */
  openRun: (run: IRun) => void;
  /** What each cell cost (absent: the cell-cost plugin is not loaded). */
  cellCosts?: ICellCosts | null;
}

/** Right-side panel: runs across notebooks, host CPU and memory, each GPU, every kernel. */
export class MonitorPanel extends ReactWidget {
  constructor(options: IMonitorPanelOptions) {
    super();
    this._options = options;
    this.id = 'jupyter-torchlab-monitor';
    this.addClass('jp-torchlab-panel');
    this.title.icon = torchlabIcon;
    this.title.caption = 'PyTorch kernel monitor';
    options.model.changed.connect(this._onModelChanged, this);
    options.cellCosts?.changed.connect(this._onModelChanged, this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._options.model.changed.disconnect(this._onModelChanged, this);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._options.onVisibilityChanged(true);
    this.update();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._options.onVisibilityChanged(false);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._options.onVisibilityChanged(this.isVisible);
  }

  protected onBeforeDetach(msg: Message): void {
    this._options.onVisibilityChanged(false);
    super.onBeforeDetach(msg);
  }

  protected render(): JSX.Element {
    const { model, actions } = this._options;
    const snapshot = model.snapshot;
    const showGpu = this._options.showGpu();
    return (
      <div className="jp-torchlab-panel-body">
        <header className="jp-torchlab-panel-header">
          <h2>Kernel monitor</h2>
          <ConnectionBadge mode={model.mode} error={model.error} />
        </header>
        {model.unavailable !== null ? (
          <section className="jp-torchlab-section jp-torchlab-unavailable">
            <h3>The server extension did not load</h3>
            <p>{model.unavailable}</p>
          </section>
        ) : snapshot ? (
          <>
            <RunList snapshot={snapshot} openRun={this._options.openRun} />
            {this._options.cellCosts && (
              <CellCostList
                cells={this._options.cellCosts.currentCells()}
                showCell={id => void this._options.cellCosts?.showCell(id)}
              />
            )}
            <HostSection model={model} snapshot={snapshot} />
            {showGpu && <GpuSection model={model} snapshot={snapshot} />}
            <KernelTable model={model} snapshot={snapshot} showGpu={showGpu} actions={actions} />
            <Errors errors={snapshot.errors} />
          </>
        ) : (
          <p className="jp-torchlab-empty">
            {model.error ? `Waiting for the server: ${model.error}` : 'Waiting for the first sample…'}
          </p>
        )}
      </div>
    );
  }

  private _onModelChanged(): void {
    if (this.isVisible) {
      this.update();
    }
  }

  private _options: IMonitorPanelOptions;
}

function ConnectionBadge(props: { mode: string; error: string | null }): JSX.Element {
  const label =
    props.mode === 'streaming'
      ? 'live'
      : props.mode === 'polling'
        ? 'polling, reconnecting'
        : props.mode === 'connecting'
          ? 'connecting'
          : props.mode === 'unavailable'
            ? 'not loaded'
            : 'paused';
  return (
    <span
      className={`jp-torchlab-badge jp-torchlab-badge-${props.mode}`}
      title={props.error ?? undefined}
    >
      {label}
    </span>
  );
}

function HostSection(props: { model: MetricsModel; snapshot: ISnapshot }): JSX.Element {
  const host = props.snapshot.host;
  const series = props.model.hostSeries;
  const capacity = props.model.historyLength;
  if (!host) {
    return <section className="jp-torchlab-section">Host readings unavailable.</section>;
  }
  const memTotal = host.memory_limit ?? host.memory_total;
  const cpus =
    host.cpu_limit !== null && host.cpu_limit !== undefined
      ? `${host.cpu_limit} of ${host.cpu_count} CPUs`
      : `${host.cpu_count ?? MISSING} CPUs`;
  const load = host.load_avg?.length ? `load ${host.load_avg[0].toFixed(2)}` : '';
  return (
    <section className="jp-torchlab-section jp-torchlab-host">
      <h3>Host</h3>
      <Meter
        label="CPU"
        value={formatPercent(host.cpu_percent)}
        detail={[cpus, load].filter(Boolean).join(', ')}
        series={series.cpu}
        capacity={capacity}
      />
      <Meter
        label="Memory"
        value={formatPercent(ratioPercent(host.memory_used, memTotal))}
        detail={formatUsage(host.memory_used, memTotal)}
        series={series.memory}
        capacity={capacity}
      />
    </section>
  );
}

function GpuSection(props: { model: MetricsModel; snapshot: ISnapshot }): JSX.Element {
  const { gpus, gpu_reason } = props.snapshot;
  if (gpus.length === 0) {
    return (
      <section className="jp-torchlab-section jp-torchlab-gpus">
        <h3>GPU</h3>
        <p className="jp-torchlab-note">{gpu_reason ? `No GPU: ${gpu_reason}` : 'No GPU.'}</p>
      </section>
    );
  }
  return (
    <section className="jp-torchlab-section jp-torchlab-gpus">
      <h3>GPU</h3>
      {gpus.map(gpu => (
        <GpuBlock key={gpu.uuid ?? gpu.index} model={props.model} gpu={gpu} />
      ))}
      {gpu_reason && <p className="jp-torchlab-note">{gpu_reason}</p>}
    </section>
  );
}

function GpuBlock(props: { model: MetricsModel; gpu: IGpu }): JSX.Element {
  const { gpu } = props;
  const series = props.model.gpuSeries(gpu);
  const capacity = props.model.historyLength;
  const extras = [
    gpu.temperature !== null ? `${Math.round(gpu.temperature)} °C` : '',
    gpu.power_watts !== null ? `${Math.round(gpu.power_watts)} W` : ''
  ]
    .filter(Boolean)
    .join(', ');
  return (
    <div className="jp-torchlab-gpu" data-gpu-index={gpu.index}>
      <div className="jp-torchlab-gpu-name">
        {gpu.index}: {gpu.name ?? 'GPU'} {extras && <span>({extras})</span>}
      </div>
      <Meter
        label="Util"
        value={formatPercent(gpu.utilization_gpu)}
        series={series.utilization}
        capacity={capacity}
      />
      <Meter
        label="Memory"
        value={formatPercent(ratioPercent(gpu.memory_used, gpu.memory_total))}
        detail={formatUsage(gpu.memory_used, gpu.memory_total)}
        series={series.memory}
        capacity={capacity}
      />
    </div>
  );
}

function Errors(props: { errors: { [source: string]: string } }): JSX.Element | null {
  const entries = Object.entries(props.errors ?? {});
  if (entries.length === 0) {
    return null;
  }
  return (
    <section className="jp-torchlab-section jp-torchlab-errors">
      <h3>Sampling problems</h3>
      <ul>
        {entries.map(([source, message]) => (
          <li key={source}>
            <b>{source}</b>: {message}
          </li>
        ))}
      </ul>
    </section>
  );
}
