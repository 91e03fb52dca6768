/**
 * The chart history of the panel: the last N readings of the host, of each GPU and of each
 * kernel that has used a GPU, built from snapshots. Pure (no timers, no signals, no JupyterLab),
 * so it is tested with plain asserts.
 */

import type { IGpu, ISnapshot } from './types';

export interface IHostSeries {
  /** Host CPU, percent of all CPUs. */
  cpu: number[];
  /** Host memory used, percent of the memory limit (or of the total where there is none). */
  memory: number[];
}

/**
 * A GPU history, percent per reading (null where it could not be read). For a GPU: its
 * utilisation and its memory used. For a kernel: its share of its GPUs' SMs (percent of one GPU,
 * may pass 100 on several GPUs) and its GPU memory as a percent of the memory of the GPUs it uses.
 */
export interface IGpuSeries {
  utilization: Array<number | null>;
  memory: Array<number | null>;
}

/** Identify a GPU across snapshots by UUID, falling back to its index. */
export function gpuKey(gpu: IGpu): string {
  return gpu.uuid ?? `index-${gpu.index}`;
}

export class SnapshotSeries {
  /** Keep `length` readings per series. */
  constructor(readonly length: number = 60) {}

  get host(): IHostSeries {
    return this._host;
  }

  /** Whether no snapshot has been recorded yet. */
  get isEmpty(): boolean {
    return this._host.cpu.length === 0;
  }

  /** Return the series of one GPU, keyed like `gpuKey` (empty for a GPU not seen last). */
  gpu(gpu: IGpu): IGpuSeries {
    return this._gpus.get(gpuKey(gpu)) ?? emptySeries();
  }

  /** Return the GPU series of one kernel (empty until it has used a GPU). */
  kernel(kernelId: string): IGpuSeries {
    return this._kernels.get(kernelId) ?? emptySeries();
  }

  /** Add one snapshot's readings; forget the GPUs and kernels it no longer lists. */
  record(snapshot: ISnapshot): void {
    const host = snapshot.host;
    if (host) {
      this._push(this._host.cpu, host.cpu_percent ?? 0);
      const total = host.memory_limit ?? host.memory_total;
      this._push(this._host.memory, total ? (100 * (host.memory_used ?? 0)) / total : 0);
    }
    const gpus = new Map<string, IGpuSeries>();
    for (const gpu of snapshot.gpus) {
      const key = gpuKey(gpu);
      const series = this._gpus.get(key) ?? emptySeries();
      gpus.set(key, series);
      this._push(series.utilization, gpu.utilization_gpu);
      this._push(series.memory, percent(gpu.memory_used, gpu.memory_total));
    }
    this._gpus = gpus;
    const kernels = new Map<string, IGpuSeries>();
    for (const kernel of snapshot.kernels) {
      const series = this._kernels.get(kernel.id) ?? (kernel.gpu_memory ? emptySeries() : null);
      if (!series) {
        continue; // a history only for kernels that have used a GPU
      }
      kernels.set(kernel.id, series);
      const devices = kernel.gpu_devices ?? [];
      const total = snapshot.gpus
        .filter(g => devices.includes(g.index))
        .reduce((sum, g) => sum + (g.memory_total ?? 0), 0);
      const held = kernel.gpu_memory;
      this._push(series.utilization, kernel.gpu_utilization ?? null);
      this._push(series.memory, held === 0 ? 0 : percent(held, total));
    }
    this._kernels = kernels;
  }

  private _push<T>(series: T[], value: T): void {
    series.push(value);
    if (series.length > this.length) {
      series.splice(0, series.length - this.length);
    }
  }

  private _host: IHostSeries = { cpu: [], memory: [] };
  private _gpus = new Map<string, IGpuSeries>();
  private _kernels = new Map<string, IGpuSeries>();
}

function emptySeries(): IGpuSeries {
  return { utilization: [], memory: [] };
}

/** `part` as a percent of `whole`, or null when either is unknown (or `whole` is 0). */
function percent(part: number | null, whole: number | null): number | null {
  return part !== null && whole ? (100 * part) / whole : null;
}
