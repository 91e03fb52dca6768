/**
 * What the connection and model tests share: jest's fake timers with a list of the pending
 * ones, a transport the test drives by hand, and snapshots.
 */
import type { IStreamHandlers, ITransport } from '../src/connection';
import type { IGpu, IKernel, IRun, ISnapshot } from '../src/types';
import { describeFailure } from '../src/unavailable';

type Timer = ReturnType<typeof setTimeout>;

/**
 * jest's fake timers (Poll and the busy clock read the page's setTimeout and Date), plus the
 * delays of the timers still pending. `advance` lets promises settle between timers, as Poll
 * sets a tick's timer only after the last tick's promise has settled.
 */
export class FakeTimers {
  constructor() {
    jest.useFakeTimers({ now: 1_700_000_000_000 });
    const fakeSet = global.setTimeout;
    const fakeClear = global.clearTimeout;
    const pending = this._pending;
    global.setTimeout = ((fn: (...args: unknown[]) => void, ms = 0, ...args: unknown[]) => {
      const handle = fakeSet(() => {
        pending.delete(handle);
        fn(...args);
      }, ms);
      pending.set(handle, { at: Date.now() + ms, immediate: !(ms > 0) });
      return handle;
    }) as typeof global.setTimeout;
    global.clearTimeout = ((handle: Timer) => {
      pending.delete(handle);
      fakeClear(handle);
    }) as typeof global.clearTimeout;
  }

  get now(): number {
    return Date.now();
  }

  /** Delays of the pending timers, soonest first. */
  get pending(): number[] {
    return Array.from(this._pending.values(), t => t.at - Date.now()).sort((a, b) => a - b);
  }

  /** Run the timers due in the next `ms`, letting promises settle between them. */
  async advance(ms: number): Promise<void> {
    await jest.advanceTimersByTimeAsync(ms);
  }

  /**
   * Let promises settle and run the 0 ms timers (Poll starts a tick on one), until none is
   * left. jest dates a 0 ms timer set while it runs timers 1 ms later, so that one costs 1 ms.
   */
  async settle(): Promise<void> {
    await jest.advanceTimersByTimeAsync(0);
    while (Array.from(this._pending.values()).some(t => t.immediate)) {
      await jest.advanceTimersByTimeAsync(1);
    }
  }

  uninstall(): void {
    jest.useRealTimers(); // restores setTimeout and clearTimeout too
  }

  private _pending = new Map<Timer, { at: number; immediate: boolean }>();
}

/** A transport whose streams the test opens, feeds and drops by hand. */
export class FakeTransport implements ITransport {
  streams: Array<{ handlers: IStreamHandlers; closed: boolean }> = [];
  fetches = 0;
  nextFetch: () => Promise<ISnapshot> = () => Promise.resolve(snapshot(0));
  fetchHistory?: (seconds: number) => Promise<ISnapshot[]>;

  connect(handlers: IStreamHandlers) {
    const stream = { handlers, closed: false };
    this.streams.push(stream);
    return { close: () => (stream.closed = true) };
  }

  fetch(): Promise<ISnapshot> {
    this.fetches++;
    return this.nextFetch();
  }

  get last() {
    return this.streams[this.streams.length - 1];
  }

  get open() {
    return this.streams.filter(s => !s.closed);
  }
}

export function kernel(overrides: Partial<IKernel> = {}): IKernel {
  return {
    id: 'k1',
    name: 'python3',
    execution_state: 'idle',
    last_activity: null,
    busy_since: null,
    pid: 42,
    cpu_percent: 0,
    memory: 1000,
    gpu_memory: null,
    path: 'a.ipynb',
    reason: null,
    ...overrides
  };
}

export function snapshot(time: number, kernels: IKernel[] = [kernel()]): ISnapshot {
  return {
    time,
    host: {
      cpu_percent: 25,
      cpu_count: 2,
      cpu_limit: null,
      per_cpu: [20, 30],
      load_avg: [0.5, 0.4, 0.3],
      memory_total: 1000,
      memory_used: 500,
      memory_available: 500,
      memory_limit: null,
      swap_total: 0,
      swap_used: 0
    },
    gpus: [],
    gpu_reason: 'no NVIDIA driver',
    kernels,
    errors: {}
  };
}

export function gpu(index: number, overrides: Partial<IGpu> = {}): IGpu {
  return {
    index,
    name: 'Fake',
    uuid: `GPU-${index}`,
    utilization_gpu: 50,
    utilization_memory: null,
    memory_used: 500,
    memory_total: 1000,
    temperature: null,
    power_watts: null,
    power_limit_watts: null,
    source: 'nvml',
    ...overrides
  };
}

export const REASON =
  'jupyter_torchlab did not load: jupyter_server 2.12.0 is older than jupyter-torchlab needs ' +
  "(cannot import name 'ws_authenticated'). Upgrade jupyter_server to 2.18 or later " +
  "(pip install --upgrade 'jupyter_server>=2.18'), then restart the Jupyter server.";

/** What the routes of an extension that did not load answer. */
export const notLoaded = (message = REASON) =>
  describeFailure('/torchlab/api/metrics', 503, 'Service Unavailable', {
    message,
    reason: 'jupyter_torchlab did not load'
  });

export function run(overrides: Partial<IRun> = {}): IRun {
  return {
    id: '42-1',
    kind: 'progress',
    desc: 'train',
    n: 45,
    total: 100,
    unit: 'it',
    rate: 8.91,
    eta: 719,
    elapsed: 5,
    started: 1000,
    updated: 1005,
    ended: null,
    state: 'running',
    error: null,
    metrics: {},
    epoch: null,
    epochs: null,
    line: 'train:  45%|####5     | 45/100 [00:05<00:06,  8.91it/s]',
    cell_id: 'cell0',
    msg_id: 'msg-1',
    kernel_id: 'k1',
    path: 'a.ipynb',
    ...overrides
  };
}
