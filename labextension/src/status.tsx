import { ReactWidget } from '@jupyterlab/ui-components';
import React from 'react';

import {
  formatBytes,
  formatPercent,
  formatSpan,
  isUnmeasured,
  memoryPressure,
  statusText,
  usageOrigin
} from './format';

const PRESSURE_NOTE: { [level: string]: string } = {
  warn: ', close to the memory limit',
  danger: ', at the memory limit: the next step may fail'
};
import { torchlabIcon } from './icons';
import type { MetricsModel } from './model';
import { currentRun, runFigures, runStatusText } from './runs';

export interface IStatusItemOptions {
  model: MetricsModel;
  /** The kernel of the current notebook, if any. */
  currentKernel: () => { id: string; status: string } | null;
  showGpu: () => boolean;
  onClick: () => void;
}

/** Status bar item: the current notebook kernel's state, running time, CPU, memory, GPU memory. */
export class KernelStatusItem extends ReactWidget {
  constructor(options: IStatusItemOptions) {
    super();
    this._options = options;
    this.addClass('jp-torchlab-status');
    this.node.title = 'PyTorch kernel monitor: click to open the panel';
    options.model.changed.connect(this.update, this);
    this.node.addEventListener('click', options.onClick);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._options.model.changed.disconnect(this.update, this);
    this.node.removeEventListener('click', this._options.onClick);
    super.dispose();
  }

  protected render(): JSX.Element {
    const { model, currentKernel, showGpu } = this._options;
    const current = currentKernel();
    let text: string;
    let detail = '';
    let pressure = 'ok';
    if (model.unavailable !== null) {
      // the cause and the fix, from the server; the panel (a click away) shows it in full
      text = 'monitor off: server extension not loaded';
      detail = model.unavailable;
    } else if (!current) {
      text = 'no kernel';
    } else {
      const kernel = model.kernel(current.id);
      if (kernel) {
        const run = currentRun(kernel.runs);
        text = statusText(kernel, model.busySeconds(kernel), {
          showGpu: showGpu(),
          runText: run ? runStatusText(run) : null
        });
        pressure = memoryPressure(kernel, model.snapshot);
        const origin = usageOrigin(kernel);
        const doing = run ? `${run.desc || run.kind}: ${runFigures(run)}. ` : '';
        detail = doing + (isUnmeasured(kernel) || kernel.stopped
          ? `Kernel ${kernel.name}: ${kernel.reason}`
          : `Kernel ${kernel.name}${origin ? ` (${origin})` : ''}: CPU ${formatPercent(
              kernel.cpu_percent
            )}, memory ${formatBytes(kernel.memory)}${PRESSURE_NOTE[pressure] ?? ''}${
              kernel.gpu_waiting
                ? `. Busy, but its GPU share stayed at ${formatPercent(
                    kernel.gpu_waiting.utilization
                  )} for ${formatSpan(kernel.gpu_waiting.seconds)}: it is probably waiting for ` +
                  'data (try more DataLoader workers, pin_memory=True, the data in memory, or a ' +
                  'larger batch)'
                : ''
            }`);
      } else {
        // Not in a snapshot yet (just started, or the stream is still connecting).
        text = current.status;
      }
    }
    return (
      <span
        className="jp-torchlab-status-inner"
        data-pressure={pressure}
        data-unavailable={model.unavailable !== null ? 'true' : undefined}
        title={
          detail ? `${detail.replace(/\.$/, '')}. Click to open the monitor panel.` : undefined
        }
      >
        <torchlabIcon.react tag="span" className="jp-torchlab-status-icon" />
        <span className="jp-torchlab-status-text">{text}</span>
      </span>
    );
  }

  private _options: IStatusItemOptions;
}
