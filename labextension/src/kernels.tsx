/**
 * The panel's kernels: one block per kernel, its lines wrapping so that the right side bar never
 * clips it, with its notebook, state, CPU, memory, GPU share and memory over time, an idle
 * holder's "Free it", a waiting GPU's advice, and Interrupt / Shut down.
 */

import React from 'react';

import { Meter } from './charts';
import {
  basename,
  formatBytes,
  formatDuration,
  formatPercent,
  formatSpan,
  isUnmeasured,
  MISSING,
  usageOrigin
} from './format';
import { idleHolderText, type IKernelActions } from './kernelActions';
import type { MetricsModel } from './model';
import type { IKernel, ISnapshot } from './types';

export function KernelTable(props: {
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
