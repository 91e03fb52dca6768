/**
 * The live metrics model: one per page, shared by the status bar item, the panel and the
 * notifications (through the ITorchlab token).
 *
 * It composes the connection (connection.ts: the stream, REST polling while it is down, backoff
 * and standby) and the chart history (series.ts), and keeps the busy clock: a busy kernel's
 * running time counts up locally, by the server's clock, between snapshots.
 */

import type { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { Connection, ConnectionMode, IConnectionOptions } from './connection';
import { IGpuSeries, IHostSeries, SnapshotSeries } from './series';
import type { IGpu, IKernel, ISnapshot } from './types';

export interface IMetricsModelOptions extends IConnectionOptions {
  /** Readings kept per chart series. */
  historyLength?: number;
}

export class MetricsModel implements IDisposable {
  constructor(options: IMetricsModelOptions) {
    this._connection = new Connection(options);
    this._series = new SnapshotSeries(options.historyLength ?? 60);
    this._connection.changed.connect(this._onConnectionChanged, this);
    this._connection.received.connect(this._onSnapshot, this);
    this._connection.historyReceived.connect(this._onHistory, this);
  }

  /** Emitted on every new snapshot, mode change, and once a second while a kernel is busy. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get mode(): ConnectionMode {
    return this._connection.mode;
  }

  get snapshot(): ISnapshot | null {
    return this._snapshot;
  }

  /** The last transport error, cleared by the next snapshot. */
  get error(): string | null {
    return this._connection.error;
  }

  /** Why the server extension is not loaded, with what to do (null while it is). */
  get unavailable(): string | null {
    return this._connection.unavailable;
  }

  get hostSeries(): IHostSeries {
    return this._series.host;
  }

  get historyLength(): number {
    return this._series.length;
  }

  /** Return the chart series of one GPU, keyed like `gpuKey`. */
  gpuSeries(gpu: IGpu): IGpuSeries {
    return this._series.gpu(gpu);
  }

  /** Return the GPU chart series of one kernel (empty until it has used a GPU). */
  kernelGpuSeries(kernelId: string): IGpuSeries {
    return this._series.kernel(kernelId);
  }

  get refreshInterval(): number {
    return this._connection.refreshInterval;
  }

  set refreshInterval(ms: number) {
    this._connection.refreshInterval = ms;
  }

  get isDisposed(): boolean {
    return this._connection.isDisposed;
  }

  /** Whether the page is hidden (document.visibilityState); the model stands by while it is. */
  setHidden(hidden: boolean): void {
    this._connection.setHidden(hidden);
  }

  /** Declare whether the view named `who` needs live data; the model runs while any does. */
  setNeeded(who: string, needed: boolean): void {
    this._connection.setNeeded(who, needed);
  }

  /** Record that the server extension is not loaded, and why (the page config says so). */
  setUnavailable(reason: string): void {
    this._connection.setUnavailable(reason);
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
    const serverNow = (Date.now() + this._clockOffset) / 1000;
    return Math.max(0, serverNow - kernel.busy_since);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._stopTick();
    this._connection.dispose();
    Signal.clearData(this);
  }

  private _onConnectionChanged(): void {
    const mode = this._connection.mode;
    if (mode === 'standby' || mode === 'unavailable') {
      this._stopTick();
    }
    this._changed.emit();
  }

  private _onSnapshot(_: Connection, snapshot: ISnapshot): void {
    this._snapshot = snapshot;
    this._clockOffset = snapshot.time * 1000 - Date.now();
    this._series.record(snapshot);
    this._scheduleTick();
    this._changed.emit();
  }

  /** Fill only charts that the live data has not started yet. */
  private _onHistory(_: Connection, snapshots: ISnapshot[]): void {
    if (this._series.isEmpty) {
      snapshots.forEach(s => this._series.record(s));
      this._changed.emit();
    }
  }

  /** Re-render once a second while a kernel is busy, so its running time counts up locally. */
  private _scheduleTick(): void {
    if (this._tick !== null || this.mode === 'standby') {
      return;
    }
    if (!(this._snapshot?.kernels ?? []).some(k => k.execution_state === 'busy')) {
      return;
    }
    this._tick = setTimeout(() => {
      this._tick = null;
      if (this.mode !== 'standby') {
        this._changed.emit();
        this._scheduleTick();
      }
    }, 1000);
  }

  private _stopTick(): void {
    if (this._tick !== null) {
      clearTimeout(this._tick);
      this._tick = null;
    }
  }

  private _connection: Connection;
  private _series: SnapshotSeries;
  private _snapshot: ISnapshot | null = null;
  private _clockOffset = 0;
  private _tick: ReturnType<typeof setTimeout> | null = null;
  private _changed = new Signal<this, void>(this);
}
