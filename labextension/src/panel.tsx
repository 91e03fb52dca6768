import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import React from 'react';

import {
  basename,
  formatBytes,
  formatDuration,
  formatPercent,
  formatSpan,
  formatUsage,
  isUnmeasured,
  MISSING,
  ratioPercent,
  sparklinePoints,
  usageOrigin
} from './format';
import { torchlabIcon } from './icons';
import { idleHolderText, type IKernelActions } from './kernelActions';
import type { MetricsModel } from './model';
import type { IGpu, IKernel, ISnapshot } from './types';

export interface IMonitorPanelOptions {
  model: MetricsModel;
  actions: IKernelActions;
  showGpu: () => boolean;
  /** Called when the panel becomes visible or hidden, so the model can stand by. */
  onVisibilityChanged: (visible: boolean) => void;
}

const CHART_WIDTH = 120;
const CHART_HEIGHT = 28;

/** Right-side panel: host CPU and memory, each GPU, and every kernel with actions. */
export class MonitorPanel extends ReactWidget {
  constructor(options: IMonitorPanelOptions) {
    super();
    this._options = options;
    this.id = 'jupyter-torchlab-monitor';
    this.addClass('jp-torchlab-panel');
    this.title.icon = torchlabIcon;
    this.title.caption = 'PyTorch kernel monitor';
    options.model.changed.connect(this._onModelChanged, this);
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
        {snapshot ? (
          <>
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

function Sparkline(props: {
  values: ReadonlyArray<number | null>;
  capacity: number;
  label: string;
}): JSX.Element {
  const points = sparklinePoints(props.values, CHART_WIDTH, CHART_HEIGHT, 100, props.capacity);
  return (
    <svg
      className="jp-torchlab-spark"
      // A pixel of margin so lines at 0% and 100% are not cut in half by the edge.
      viewBox={`0 -1 ${CHART_WIDTH} ${CHART_HEIGHT + 2}`}
      preserveAspectRatio="none"
      role="img"
      aria-label={props.label}
    >
      <polyline points={points} />
    </svg>
  );
}

function Meter(props: {
  label: string;
  value: string;
  detail?: string;
  title?: string;
  series: ReadonlyArray<number | null>;
  capacity: number;
}): JSX.Element {
  return (
    <div className="jp-torchlab-meter" title={props.title}>
      <div className="jp-torchlab-meter-text">
        <span className="jp-torchlab-meter-label">{props.label}</span>
        <span className="jp-torchlab-meter-value">{props.value}</span>
        {props.detail && <span className="jp-torchlab-meter-detail">{props.detail}</span>}
      </div>
      <Sparkline
        values={props.series}
        capacity={props.capacity}
        label={`${props.label} history`}
      />
    </div>
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

function KernelTable(props: {
  model: MetricsModel;
  snapshot: ISnapshot;
  showGpu: boolean;
  actions: IKernelActions;
}): JSX.Element {
  const { model, snapshot, actions } = props;
  if (snapshot.kernels.length === 0) {
    return (
      <section className="jp-torchlab-section">
        <h3>Kernels</h3>
        <p className="jp-torchlab-note">No running kernels.</p>
      </section>
    );
  }
  // GPU figures only where there is something to show: side panels are narrow.
  const showGpu =
    props.showGpu &&
    (snapshot.gpus.length > 0 || snapshot.kernels.some(k => k.gpu_memory !== null));
  return (
    <section className="jp-torchlab-section">
      <h3>Kernels</h3>
      {/* One block per kernel, its lines wrapping, so the right side bar never clips it. */}
      <div className="jp-torchlab-kernels" role="list">
        {snapshot.kernels.map(kernel => (
          <KernelRow
            key={kernel.id}
            model={model}
            snapshot={snapshot}
            kernel={kernel}
            showGpu={showGpu}
            actions={actions}
          />
        ))}
      </div>
    </section>
  );
}

function KernelRow(props: {
  model: MetricsModel;
  snapshot: ISnapshot;
  kernel: IKernel;
  showGpu: boolean;
  actions: IKernelActions;
}): JSX.Element {
  const { model, snapshot, kernel, showGpu, actions } = props;
  const busy = model.busySeconds(kernel);
  const remote = isUnmeasured(kernel);
  const origin = kernel.source === 'kernel' ? usageOrigin(kernel) : undefined;
  const state = kernel.stopped ? 'stopped' : kernel.execution_state;
  const series = model.kernelGpuSeries(kernel.id);
  const usesGpu = showGpu && (kernel.gpu_memory ?? 0) > 0;
  const share =
    kernel.gpu_utilization !== null && kernel.gpu_utilization !== undefined
      ? `${formatPercent(kernel.gpu_utilization)} of ${
          (kernel.gpu_devices ?? []).length > 1 ? 'its GPUs' : 'the GPU'
        }`
      : (kernel.gpu_utilization_reason ?? 'share not reported');
  const devices = (kernel.gpu_devices ?? []).join(', ');
  return (
    <div
      className="jp-torchlab-kernel-row"
      role="listitem"
      data-kernel-id={kernel.id}
      data-state={kernel.execution_state}
      data-holding-idle={kernel.holding_idle ? 'true' : undefined}
    >
      <div className="jp-torchlab-kernel-head">
        <span className="jp-torchlab-kernel-path" title={kernel.path ?? kernel.id}>
          {kernel.path ? (
            <a href="#" onClick={event => (event.preventDefault(), actions.open(kernel))}>
              {basename(kernel.path)}
            </a>
          ) : (
            `${kernel.name} ${kernel.id.slice(0, 8)}`
          )}
        </span>
        <span
          className={`jp-torchlab-state jp-torchlab-state-${state}`}
          title={kernel.stopped ? (kernel.reason ?? '') : undefined}
        >
          {state}
        </span>
        <span className="jp-torchlab-busy" title="Running time of the current execution">
          {busy === null ? '' : formatDuration(busy)}
        </span>
      </div>
      <div className="jp-torchlab-kernel-figures">
        {remote ? (
          <span title={kernel.reason ?? ''}>not local</span>
        ) : (
          <>
            <span title={origin}>
              <span className="jp-torchlab-figure-label">CPU</span>{' '}
              {formatPercent(kernel.cpu_percent)}
            </span>
            <span title={origin}>
              <span className="jp-torchlab-figure-label">Mem</span> {formatBytes(kernel.memory)}
            </span>
            {showGpu && kernel.gpu_memory !== null && (
              <span className="jp-torchlab-kernel-gpumem" title={devices ? `GPU ${devices}` : undefined}>
                <span className="jp-torchlab-figure-label">GPU</span>{' '}
                {formatBytes(kernel.gpu_memory)}
              </span>
            )}
          </>
        )}
      </div>
      {usesGpu && (
        <div className="jp-torchlab-kernel-gpu">
          <Meter
            label="GPU use"
            value={
              kernel.gpu_utilization !== null && kernel.gpu_utilization !== undefined
                ? formatPercent(kernel.gpu_utilization)
                : MISSING
            }
            detail={devices ? `GPU ${devices}` : undefined}
            title={share}
            series={series.utilization}
            capacity={model.historyLength}
          />
          <Meter
            label="GPU mem"
            value={formatBytes(kernel.gpu_memory)}
            series={series.memory}
            capacity={model.historyLength}
          />
        </div>
      )}
      {kernel.holding_idle && (
        <div className="jp-torchlab-flag jp-torchlab-idle-holder">
          <span>{idleHolderText(kernel, snapshot.time)}</span>
          <button
            className="jp-Button jp-mod-styled jp-mod-accept jp-torchlab-free"
            title="Shut the kernel down, or interrupt it"
            onClick={() => void actions.free(kernel)}
          >
            Free it
          </button>
        </div>
      )}
      {kernel.gpu_waiting && (
        <div className="jp-torchlab-flag jp-torchlab-gpu-waiting">
          Busy, but its GPU is mostly idle: {formatPercent(kernel.gpu_waiting.utilization)} for{' '}
          {formatSpan(kernel.gpu_waiting.seconds)}. It is likely waiting for data (DataLoader
          workers, pin_memory, data in memory, a larger batch).
        </div>
      )}
      <div className="jp-torchlab-actions">
        <button
          className="jp-Button jp-mod-styled jp-mod-reject jp-torchlab-interrupt"
          title="Interrupt the kernel (like Ctrl-C)"
          onClick={() => void actions.interrupt(kernel)}
        >
          Interrupt
        </button>
        <button
          className="jp-Button jp-mod-styled jp-mod-warn jp-torchlab-shutdown"
          title="Shut the kernel down (asks first)"
          onClick={() => void actions.shutdown(kernel)}
        >
          Shut down
        </button>
      </div>
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
