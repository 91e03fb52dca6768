/**
 * The live metrics model: one per page, shared by the status bar item and the panel.
 *
 * It subscribes to the server's snapshot stream, falls back to polling while the stream is
 * down, reconnects with exponential backoff, and stands by (no socket, no timers) while the
 * page is hidden or no view needs it. Transport, clock and timers are injected, so the state
 * handling is tested without a server, a browser or real time.
 *
 * (Over 400 lines: the connection's state machine and the series it keeps are one class, so the
 * transitions between standby, streaming and polling stay in one place and are tested as one.)
 */

import { ISignal, Signal } from '@lumino/signaling';

import type { IGpu, IKernel, ISnapshot } from './types';
import { isUnavailable } from './unavailable';

/** An open stream; closing it must not call the `close` handler of its own connect(). */
export interface IStream {
  close(): void;
}

export interface IStreamHandlers {
  open(): void;
  message(snapshot: ISnapshot): void;
  /** Called once when the stream fails to open or drops. */
  close(): void;
}

/** How the model talks to the server (see handler.ts for the real one). */
export interface ITransport {
  connect(handlers: IStreamHandlers): IStream;
  fetch(): Promise<ISnapshot>;
  /** Recent snapshots, oldest first, to fill the history charts when the model starts. */
  fetchHistory?(seconds: number): Promise<ISnapshot[]>;
}

export interface IScheduler {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface IBackoff {
  /** Delay before the first reconnect, ms. */
  initial: number;
  factor: number;
  /** Upper bound on the delay, ms. */
  max: number;
}

export const DEFAULT_BACKOFF: IBackoff = { initial: 1000, factor: 2, max: 30000 };

/** Delay before reconnect attempt number `attempt` (0-based): 1 s, 2 s, 4 s, ... capped. */
export function backoffDelay(attempt: number, backoff: IBackoff = DEFAULT_BACKOFF): number {
  return Math.min(backoff.max, backoff.initial * Math.pow(backoff.factor, Math.max(0, attempt)));
}

/**
 * standby: nothing running (hidden page or no view needs data).
 * connecting: the stream is being opened for the first time since standby.
 * streaming: snapshots arrive over the stream.
 * polling: the stream is down; snapshots are fetched every refresh interval while a reconnect
 *   is scheduled with backoff.
 * unavailable: the server extension is not loaded (the server said why, see unavailable.ts):
 *   no stream, and one request every `backoff.max` to notice a restarted server.
 */
export type ModelMode = 'standby' | 'connecting' | 'streaming' | 'polling' | 'unavailable';

export interface IMetricsModelOptions {
  transport: ITransport;
  /** Milliseconds since the epoch; Date.now by default. */
  clock?: () => number;
  scheduler?: IScheduler;
  /** Polling period while the stream is down, ms. */
  refreshInterval?: number;
  backoff?: IBackoff;
  /** Points kept per history series. */
  historyLength?: number;
  /** Seconds of server history to load when the model first starts (0: none). */
  historySeconds?: number;
}

/** The history series kept for charts. */
export interface IHostSeries {
  cpu: number[];
  memory: number[];
}

export interface IGpuSeries {
  utilization: Array<number | null>;
  memory: Array<number | null>;
}

/**
 * One kernel's GPU history: its share of its GPUs' SMs (percent of one GPU, may pass 100 on
 * several GPUs) and its GPU memory as a percent of the memory of the GPUs it uses.
 */
export interface IKernelGpuSeries {
  utilization: Array<number | null>;
  memory: Array<number | null>;
}

const realScheduler: IScheduler = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: handle => clearTimeout(handle as ReturnType<typeof setTimeout>)
};

export class MetricsModel {
  constructor(options: IMetricsModelOptions) {
    this._transport = options.transport;
    this._clock = options.clock ?? Date.now;
    this._scheduler = options.scheduler ?? realScheduler;
    this._refreshInterval = options.refreshInterval ?? 2000;
    this._backoff = options.backoff ?? DEFAULT_BACKOFF;
    this._historyLength = options.historyLength ?? 60;
    this._historySeconds = options.historySeconds ?? 0;
  }

  /** Emitted on every new snapshot, mode change, and once a second while a kernel is busy. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get mode(): ModelMode {
    return this._mode;
  }

  get snapshot(): ISnapshot | null {
    return this._snapshot;
  }

  /** The last transport error, cleared by the next snapshot. */
  get error(): string | null {
    return this._error;
  }

  /**
   * Why the server extension is not loaded, with what to do (null while it is); kept until a
   * snapshot arrives.
   */
  get unavailable(): string | null {
    return this._unavailable;
  }

  /** Failed reconnects since the stream was last open. */
  get attempt(): number {
    return this._attempt;
  }

  get hostSeries(): IHostSeries {
    return this._hostSeries;
  }

  get historyLength(): number {
    return this._historyLength;
  }

  /** Return the chart series of one GPU, keyed like `gpuKey`. */
  gpuSeries(gpu: IGpu): IGpuSeries {
    return this._gpuSeries.get(gpuKey(gpu)) ?? { utilization: [], memory: [] };
  }

  /** Return the GPU chart series of one kernel (empty until it has used a GPU). */
  kernelGpuSeries(kernelId: string): IKernelGpuSeries {
    return this._kernelSeries.get(kernelId) ?? { utilization: [], memory: [] };
  }

  get refreshInterval(): number {
    return this._refreshInterval;
  }

  set refreshInterval(ms: number) {
    this._refreshInterval = Math.max(250, ms);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Whether the page is hidden (document.visibilityState). */
  setHidden(hidden: boolean): void {
    this._hidden = hidden;
    this._update();
  }

  /**
   * Record that the server extension is not loaded, and why (the page config says so at page
   * load): the model then opens no stream and asks again only every `backoff.max`.
   */
  setUnavailable(reason: string): void {
    this._unavailable = reason;
    this._error = reason;
    if (this._mode !== 'standby') {
      this._enterUnavailable();
    } else {
      this._changed.emit();
    }
  }

  /** Declare whether the view named `who` needs live data; the model runs while any does. */
  setNeeded(who: string, needed: boolean): void {
    if (needed) {
      this._needers.add(who);
    } else {
      this._needers.delete(who);
    }
    this._update();
  }

  /** Return the kernel with this id in the latest snapshot. */
  kernel(id: string | null | undefined): IKernel | null {
    if (!id || !this._snapshot) {
      return null;
    }
    return this._snapshot.kernels.find(k => k.id === id) ?? null;
  }

  /** Seconds the kernel has been busy, by the server's clock, or null when not busy. */
  busySeconds(kernel: IKernel): number | null {
    if (kernel.execution_state !== 'busy' || kernel.busy_since === null) {
      return null;
    }
    const serverNow = (this._clock() + this._clockOffset) / 1000;
    return Math.max(0, serverNow - kernel.busy_since);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._needers.clear();
    this._stop();
    this._isDisposed = true;
    Signal.clearData(this);
  }

  private get _shouldRun(): boolean {
    return !this._isDisposed && !this._hidden && this._needers.size > 0;
  }

  private _update(): void {
    if (this._shouldRun && this._mode === 'standby') {
      this._start();
    } else if (!this._shouldRun && this._mode !== 'standby') {
      this._stop();
    }
  }

  private _start(): void {
    if (this._unavailable !== null) {
      this._enterUnavailable();
      return;
    }
    this._generation++;
    this._attempt = 0;
    this._setMode('connecting');
    if (!this._historyLoaded && this._historySeconds > 0 && this._transport.fetchHistory) {
      this._historyLoaded = true;
      const generation = this._generation;
      this._transport.fetchHistory(this._historySeconds).then(
        snapshots => {
          // Only fill charts that the live data has not started yet.
          if (generation === this._generation && this._hostSeries.cpu.length === 0) {
            snapshots.forEach(s => this._record(s));
            this._changed.emit();
          }
        },
        () => undefined
      );
    }
    this._connect();
  }

  private _stop(): void {
    this._generation++;
    this._closeStream();
    this._clearTimer('_pollTimer');
    this._clearTimer('_reconnectTimer');
    this._clearTimer('_tickTimer');
    this._setMode('standby');
  }

  private _connect(): void {
    const generation = this._generation;
    let closed = false;
    const stream = this._transport.connect({
      open: () => {
        if (closed || generation !== this._generation) {
          return;
        }
        this._attempt = 0;
        this._clearTimer('_pollTimer');
        this._setMode('streaming');
      },
      message: snapshot => {
        if (closed || generation !== this._generation) {
          return;
        }
        this._apply(snapshot);
      },
      close: () => {
        if (closed || generation !== this._generation) {
          return;
        }
        closed = true;
        this._stream = null;
        this._onStreamLost();
      }
    });
    this._stream = {
      close: () => {
        closed = true;
        stream.close();
      }
    };
  }

  private _onStreamLost(): void {
    const wasPolling = this._mode === 'polling';
    this._setMode('polling');
    if (!wasPolling) {
      this._poll();
    }
    const delay = backoffDelay(this._attempt, this._backoff);
    this._attempt++;
    this._reconnectTimer = this._scheduler.setTimeout(() => {
      this._reconnectTimer = null;
      this._connect();
    }, delay);
  }

  private _poll(): void {
    const generation = this._generation;
    this._transport.fetch().then(
      snapshot => {
        if (generation === this._generation && this._mode === 'polling') {
          this._apply(snapshot);
        }
      },
      reason => {
        if (generation !== this._generation) {
          return;
        }
        if (isUnavailable(reason)) {
          this.setUnavailable(reason.message);
          return;
        }
        this._error = reason instanceof Error ? reason.message : String(reason);
        this._changed.emit();
      }
    );
    this._clearTimer('_pollTimer');
    this._pollTimer = this._scheduler.setTimeout(() => {
      this._pollTimer = null;
      if (generation === this._generation && this._mode === 'polling') {
        this._poll();
      }
    }, this._refreshInterval);
  }

  /** Stop streaming and polling; ask again every `backoff.max` until a snapshot comes. */
  private _enterUnavailable(): void {
    this._generation++;
    this._closeStream();
    this._clearTimer('_pollTimer');
    this._clearTimer('_reconnectTimer');
    this._clearTimer('_tickTimer');
    this._mode = 'unavailable';
    this._changed.emit(); // even when it was already: the reason may be new
    this._scheduleProbe();
  }

  private _scheduleProbe(): void {
    const generation = this._generation;
    this._reconnectTimer = this._scheduler.setTimeout(() => {
      this._reconnectTimer = null;
      if (generation !== this._generation) {
        return;
      }
      this._transport.fetch().then(
        snapshot => {
          if (generation === this._generation) {
            // loaded now (the server was restarted): back to the stream
            this._generation++;
            this._attempt = 0;
            this._setMode('connecting');
            this._apply(snapshot);
            this._connect();
          }
        },
        reason => {
          if (generation === this._generation) {
            if (isUnavailable(reason) && reason.message !== this._unavailable) {
              this._unavailable = this._error = reason.message;
              this._changed.emit();
            }
            this._scheduleProbe();
          }
        }
      );
    }, this._backoff.max);
  }

  private _apply(snapshot: ISnapshot): void {
    this._snapshot = snapshot;
    this._unavailable = null;
    this._error = null;
    this._clockOffset = snapshot.time * 1000 - this._clock();
    this._record(snapshot);
    this._scheduleTick();
    this._changed.emit();
  }

  private _record(snapshot: ISnapshot): void {
    const host = snapshot.host;
    if (host) {
      push(this._hostSeries.cpu, host.cpu_percent ?? 0, this._historyLength);
      const total = host.memory_limit ?? host.memory_total;
      const used = host.memory_used ?? 0;
      push(this._hostSeries.memory, total ? (100 * used) / total : 0, this._historyLength);
    }
    const seen = new Set<string>();
    for (const gpu of snapshot.gpus) {
      const key = gpuKey(gpu);
      seen.add(key);
      let series = this._gpuSeries.get(key);
      if (!series) {
        series = { utilization: [], memory: [] };
        this._gpuSeries.set(key, series);
      }
      push(series.utilization, gpu.utilization_gpu, this._historyLength);
      const mem =
        gpu.memory_used !== null && gpu.memory_total
          ? (100 * gpu.memory_used) / gpu.memory_total
          : null;
      push(series.memory, mem, this._historyLength);
    }
    for (const key of Array.from(this._gpuSeries.keys())) {
      if (!seen.has(key)) {
        this._gpuSeries.delete(key);
      }
    }
    const kernels = new Set<string>();
    for (const kernel of snapshot.kernels) {
      kernels.add(kernel.id);
      let series = this._kernelSeries.get(kernel.id);
      if (!series) {
        if (!kernel.gpu_memory) {
          continue; // a history only for kernels that have used a GPU
        }
        series = { utilization: [], memory: [] };
        this._kernelSeries.set(kernel.id, series);
      }
      const devices = kernel.gpu_devices ?? [];
      const total = snapshot.gpus
        .filter(g => devices.includes(g.index))
        .reduce((sum, g) => sum + (g.memory_total ?? 0), 0);
      push(series.utilization, kernel.gpu_utilization ?? null, this._historyLength);
      const held = kernel.gpu_memory;
      push(
        series.memory,
        held !== null && total ? (100 * held) / total : held === 0 ? 0 : null,
        this._historyLength
      );
    }
    for (const id of Array.from(this._kernelSeries.keys())) {
      if (!kernels.has(id)) {
        this._kernelSeries.delete(id);
      }
    }
  }

  /** Re-render once a second while a kernel is busy, so its running time counts up locally. */
  private _scheduleTick(): void {
    if (this._tickTimer !== null || this._mode === 'standby') {
      return;
    }
    const anyBusy = (this._snapshot?.kernels ?? []).some(k => k.execution_state === 'busy');
    if (!anyBusy) {
      return;
    }
    this._tickTimer = this._scheduler.setTimeout(() => {
      this._tickTimer = null;
      if (this._mode !== 'standby') {
        this._changed.emit();
        this._scheduleTick();
      }
    }, 1000);
  }

  private _closeStream(): void {
    const stream = this._stream;
    this._stream = null;
    stream?.close();
  }

  private _clearTimer(name: '_pollTimer' | '_reconnectTimer' | '_tickTimer'): void {
    const handle = this[name];
    if (handle !== null) {
      this._scheduler.clearTimeout(handle);
      this[name] = null;
    }
  }

  private _setMode(mode: ModelMode): void {
    if (mode !== this._mode) {
      this._mode = mode;
      this._changed.emit();
    }
  }

  private _transport: ITransport;
  private _clock: () => number;
  private _scheduler: IScheduler;
  private _refreshInterval: number;
  private _backoff: IBackoff;
  private _historyLength: number;
  private _historySeconds: number;
  private _historyLoaded = false;
  private _hidden = false;
  private _needers = new Set<string>();
  private _mode: ModelMode = 'standby';
  private _generation = 0;
  private _attempt = 0;
  private _stream: IStream | null = null;
  private _pollTimer: unknown = null;
  private _reconnectTimer: unknown = null;
  private _tickTimer: unknown = null;
  private _snapshot: ISnapshot | null = null;
  private _error: string | null = null;
  private _unavailable: string | null = null;
  private _clockOffset = 0;
  private _hostSeries: IHostSeries = { cpu: [], memory: [] };
  private _gpuSeries = new Map<string, IGpuSeries>();
  private _kernelSeries = new Map<string, IKernelGpuSeries>();
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}

/** Identify a GPU across snapshots by UUID, falling back to its index. */
export function gpuKey(gpu: IGpu): string {
  return gpu.uuid ?? `index-${gpu.index}`;
}

function push<T>(series: T[], value: T, limit: number): void {
  series.push(value);
  if (series.length > limit) {
    series.splice(0, series.length - limit);
  }
}
