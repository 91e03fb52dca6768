/**
 * The connection to the server's snapshots: the stream first, REST polling while it is down.
 *
 * Three `Poll`s (@lumino/polling) do the timing, one job each: `stream` keeps one WebSocket (a
 * tick lasts as long as its stream) and reconnects with Poll's backoff, each wait drawn between
 * `backoff.initial` and `factor` times the last one, up to `backoff.max` (Poll's jitter keeps
 * many tabs from reconnecting in step); `fallback` fetches every refresh interval while the
 * stream is down; `probe` asks every `backoff.max` while the server extension is not loaded
 * (see unavailable.ts). While the page is hidden or no view needs data, every poll stands by
 * with no timer and the stream is closed. (Poll's `standby: 'when-hidden'` keeps ticking and
 * cannot close a socket; the connection is told of both reasons, setHidden and setNeeded.)
 */

import type { IDisposable } from '@lumino/disposable';
import { IPoll, Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import type { ISnapshot } from './types';
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

/** How the connection talks to the server (see handler.ts for the real one). */
export interface ITransport {
  connect(handlers: IStreamHandlers): IStream;
  fetch(): Promise<ISnapshot>;
  /** Recent snapshots, oldest first, to fill the history charts when the model starts. */
  fetchHistory?(seconds: number): Promise<ISnapshot[]>;
}

export interface IBackoff {
  /** Wait before the first reconnect, ms. */
  initial: number;
  /** Growth of the longest wait per failed try. */
  factor: number;
  /** Upper bound on the wait, ms; also the period of asking while the extension is missing. */
  max: number;
}

export const DEFAULT_BACKOFF: IBackoff = { initial: 1000, factor: 2, max: 30000 };

/**
 * standby: nothing running (hidden page or no view needs data).
 * connecting: the stream is being opened for the first time since standby.
 * streaming: snapshots arrive over the stream.
 * polling: the stream is down; snapshots are fetched every refresh interval while the stream
 *   reconnects with backoff.
 * unavailable: the server extension is not loaded (the server said why, see unavailable.ts):
 *   no stream, and one request every `backoff.max` to notice a restarted server.
 */
export type ConnectionMode = 'standby' | 'connecting' | 'streaming' | 'polling' | 'unavailable';

export interface IConnectionOptions {
  transport: ITransport;
  /** Polling period while the stream is down, ms. */
  refreshInterval?: number;
  backoff?: IBackoff;
  /** Seconds of server history to load when the connection first starts (0: none). */
  historySeconds?: number;
}

export class Connection implements IDisposable {
  constructor(options: IConnectionOptions) {
    this._transport = options.transport;
    this._backoff = options.backoff ?? DEFAULT_BACKOFF;
    this._historySeconds = options.historySeconds ?? 0;
    this._refreshInterval = Math.max(250, options.refreshInterval ?? 2000);
    const { initial, factor, max } = this._backoff;
    const backoff = { interval: initial, backoff: factor, max };
    this._stream = Private.poll('stream', state => this._openStream(state), backoff);
    this._fallback = Private.poll(
      'fallback',
      () => this._fetch(this._fallback, s => this._receive(s), e => this._onPollFailed(e)),
      Private.every(this._refreshInterval)
    );
    this._probe = Private.poll(
      'probe',
      () => this._fetch(this._probe, s => this._onProbed(s), e => this._onProbeFailed(e)),
      Private.every(max)
    );
  }

  /** Emitted when the mode, the error or the unavailable reason changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted with each live snapshot (the error and the unavailable reason are cleared). */
  get received(): ISignal<this, ISnapshot> {
    return this._received;
  }

  /** Emitted once, with the server's recent snapshots, after the first start. */
  get historyReceived(): ISignal<this, ISnapshot[]> {
    return this._historyReceived;
  }

  get mode(): ConnectionMode {
    return this._mode;
  }

  /** The last transport error, cleared by the next snapshot. */
  get error(): string | null {
    return this._error;
  }

  /** Why the server extension is not loaded, with what to do (null while it is). */
  get unavailable(): string | null {
    return this._unavailable;
  }

  /** Failed reconnects since the stream was last open. */
  get attempt(): number {
    return this._attempt;
  }

  get refreshInterval(): number {
    return this._refreshInterval;
  }

  set refreshInterval(ms: number) {
    this._refreshInterval = Math.max(250, ms);
    this._fallback.frequency = Private.every(this._refreshInterval);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Whether the page is hidden (document.visibilityState). */
  setHidden(hidden: boolean): void {
    this._hidden = hidden;
    this._update();
  }

  /** Declare whether the view named `who` needs live data; the connection runs while any does. */
  setNeeded(who: string, needed: boolean): void {
    if (needed) {
      this._needers.add(who);
    } else {
      this._needers.delete(who);
    }
    this._update();
  }

  /**
   * Record that the server extension is not loaded, and why (the page config says so at page
   * load): the connection then opens no stream and asks again only every `backoff.max`.
   */
  setUnavailable(reason: string): void {
    this._unavailable = this._error = reason;
    if (this._mode !== 'standby') {
      this._enterUnavailable();
    } else {
      this._changed.emit();
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._stopAll();
    this._polls.forEach(poll => poll.dispose());
    Signal.clearData(this);
  }

  private get _shouldRun(): boolean {
    return !this._isDisposed && !this._hidden && this._needers.size > 0;
  }

  private get _polls(): Poll<void>[] {
    return [this._stream, this._fallback, this._probe];
  }

  private _update(): void {
    if (this._shouldRun && this._mode === 'standby') {
      this._start();
    } else if (!this._shouldRun && this._mode !== 'standby') {
      this._stopAll();
      this._setMode('standby');
    }
  }

  private _start(): void {
    this._generation++;
    if (this._unavailable !== null) {
      this._enterUnavailable();
      return;
    }
    this._loadHistory();
    this._connect();
  }

  private _connect(): void {
    this._attempt = 0;
    this._setMode('connecting');
    void this._stream.start();
  }

  /** Close the stream and hold every poll without a timer. */
  private _stopAll(): void {
    this._generation++;
    const stream = this._streamHandle;
    this._streamHandle = null;
    stream?.close();
    this._polls.forEach(Private.standBy);
  }

  /**
   * Open one stream; settle when it ends. The promise resolves when a stream that was open
   * drops, so the next try waits `backoff.initial`, and rejects when a try fails, so Poll
   * backs off. Poll grows each wait from the last one; a start's tick waits nothing, so a
   * failure there also resolves (else Poll would retry within 0 to `initial` ms).
   */
  private _openStream(state: IPoll.State<void, unknown, 'standby'>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let opened = false;
      let done = false;
      const stream = this._transport.connect({
        open: () => {
          if (!done) {
            opened = true;
            this._attempt = 0;
            Private.standBy(this._fallback);
            this._setMode('streaming');
          }
        },
        message: snapshot => {
          if (!done) {
            this._receive(snapshot);
          }
        },
        close: () => {
          if (done) {
            return;
          }
          done = true;
          this._streamHandle = null;
          this._attempt++;
          this._setMode('polling');
          void this._fallback.start(); // at once, unless it already polls
          if (opened || state.interval === Poll.IMMEDIATE) {
            resolve();
          } else {
            reject(new Error('the snapshot stream did not open'));
          }
        }
      });
      this._streamHandle = {
        close: () => {
          done = true;
          stream.close();
          resolve(); // Poll ignores it: the stream was closed by a new schedule
        }
      };
    });
  }

  /**
   * Fetch one snapshot for `poll` and hand on the outcome, unless the poll was stood by or
   * restarted meanwhile. Failures resolve too: Poll keeps the period exact (no backoff), and a
   * handler that stands its own poll by leaves no timer behind.
   */
  private _fetch(
    poll: Poll,
    onSnapshot: (snapshot: ISnapshot) => void,
    onError: (error: unknown) => void
  ): Promise<void> {
    const tick = poll.tick;
    const ifCurrent =
      <T>(handle: (value: T) => void) =>
      (value: T) => {
        if (poll.tick === tick) {
          handle(value);
        }
      };
    return this._transport.fetch().then(ifCurrent(onSnapshot), ifCurrent(onError));
  }

  private _onPollFailed(error: unknown): void {
    if (isUnavailable(error)) {
      this.setUnavailable(error.message);
      return;
    }
    this._error = error instanceof Error ? error.message : String(error);
    this._changed.emit();
  }

  /** Stop streaming and polling; ask again every `backoff.max` until a snapshot comes. */
  private _enterUnavailable(): void {
    this._stopAll();
    this._mode = 'unavailable';
    this._changed.emit(); // even when it was unavailable already: the reason may be new
    void this._probe.schedule({ interval: this._backoff.max, phase: 'started' });
  }

  /** Loaded now (the server was restarted): back to the stream. */
  private _onProbed(snapshot: ISnapshot): void {
    Private.standBy(this._probe);
    this._connect();
    this._receive(snapshot);
  }

  private _onProbeFailed(error: unknown): void {
    if (isUnavailable(error) && error.message !== this._unavailable) {
      this._unavailable = this._error = error.message;
      this._changed.emit();
    }
  }

  private _receive(snapshot: ISnapshot): void {
    this._unavailable = null;
    this._error = null;
    this._received.emit(snapshot);
  }

  private _loadHistory(): void {
    if (this._historyLoaded || this._historySeconds <= 0 || !this._transport.fetchHistory) {
      return;
    }
    this._historyLoaded = true;
    const generation = this._generation;
    this._transport.fetchHistory(this._historySeconds).then(
      snapshots => {
        if (generation === this._generation) {
          this._historyReceived.emit(snapshots);
        }
      },
      () => undefined
    );
  }

  private _setMode(mode: ConnectionMode): void {
    if (mode !== this._mode) {
      this._mode = mode;
      this._changed.emit();
    }
  }

  private _transport: ITransport;
  private _backoff: IBackoff;
  private _historySeconds: number;
  private _historyLoaded = false;
  private _refreshInterval: number;
  private _stream: Poll<void>;
  private _fallback: Poll<void>;
  private _probe: Poll<void>;
  private _streamHandle: IStream | null = null;
  private _hidden = false;
  private _needers = new Set<string>();
  private _mode: ConnectionMode = 'standby';
  /** Bumped on every start and stop: a late history answer of an earlier run is dropped. */
  private _generation = 0;
  private _attempt = 0;
  private _error: string | null = null;
  private _unavailable: string | null = null;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
  private _received = new Signal<this, ISnapshot>(this);
  private _historyReceived = new Signal<this, ISnapshot[]>(this);
}

namespace Private {
  /**
   * A poll that waits for start() or schedule(), at `frequency` as given (Poll's constructor
   * would lift `max` to at least 30 s).
   */
  export function poll<T>(
    name: string,
    factory: Poll.Factory<T, unknown, 'standby'>,
    frequency: IPoll.Frequency
  ): Poll<T> {
    const poll = new Poll<T>({
      auto: false,
      factory,
      name: `jupyter-torchlab:${name}`,
      standby: 'never' // the connection stands by itself, see the module's docstring
    });
    poll.frequency = frequency;
    return poll;
  }

  /** A fixed period (fetches resolve even when they fail, so Poll never backs them off). */
  export function every(ms: number): IPoll.Frequency {
    return { interval: ms, backoff: false, max: ms };
  }

  /** Hold a poll without a timer until start() or schedule() (Poll's 'standby' phase). */
  export function standBy(poll: Poll<any>): void {
    void poll.schedule({
      cancel: ({ phase }) => phase === 'standby',
      interval: Poll.NEVER,
      phase: 'standby'
    });
  }
}
