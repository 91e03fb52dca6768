import {
  backoffDelay,
  IScheduler,
  IStreamHandlers,
  ITransport,
  MetricsModel
} from '../src/model';
import type { IKernel, ISnapshot } from '../src/types';
import { describeFailure, notLoadedMessage } from '../src/unavailable';

/** Timers that run only when the test advances the clock. */
class ManualClock implements IScheduler {
  now = 1_700_000_000_000;

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = { at: this.now + ms, fn, id: this._next++ };
    this._timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    this._timers = this._timers.filter(t => t.id !== handle);
  }

  /** Delays of the pending timers, soonest first. */
  get pending(): number[] {
    return this._timers.map(t => t.at - this.now).sort((a, b) => a - b);
  }

  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const due = this._timers.filter(t => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) {
        break;
      }
      this._timers = this._timers.filter(t => t !== due);
      this.now = due.at;
      due.fn();
    }
    this.now = end;
  }

  private _timers: Array<{ at: number; fn: () => void; id: number }> = [];
  private _next = 1;
}

/** A transport whose streams the test opens, feeds and drops by hand. */
class FakeTransport implements ITransport {
  streams: Array<{ handlers: IStreamHandlers; closed: boolean }> = [];
  fetches = 0;
  nextFetch: () => Promise<ISnapshot> = () => Promise.resolve(snapshot(0));

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

function kernel(overrides: Partial<IKernel> = {}): IKernel {
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

function snapshot(time: number, kernels: IKernel[] = [kernel()]): ISnapshot {
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

const flush = () => new Promise<void>(resolve => Promise.resolve().then(() => resolve()));

function setup(options: { refreshInterval?: number } = {}) {
  const clock = new ManualClock();
  const transport = new FakeTransport();
  const model = new MetricsModel({
    transport,
    clock: () => clock.now,
    scheduler: clock,
    refreshInterval: options.refreshInterval ?? 2000,
    backoff: { initial: 1000, factor: 2, max: 8000 },
    historyLength: 3
  });
  let changes = 0;
  model.changed.connect(() => changes++);
  return { clock, transport, model, changes: () => changes };
}

describe('backoffDelay', () => {
  it('doubles from the initial delay up to the cap', () => {
    const schedule = [0, 1, 2, 3, 4, 5, 10].map(a => backoffDelay(a));
    expect(schedule).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(backoffDelay(2, { initial: 500, factor: 3, max: 10000 })).toBe(4500);
  });
});

describe('MetricsModel stand-by', () => {
  it('opens nothing until a view needs it', () => {
    const { transport, model, clock } = setup();
    expect(model.mode).toBe('standby');
    expect(transport.streams).toHaveLength(0);
    expect(clock.pending).toEqual([]);
    model.setNeeded('panel', true);
    expect(model.mode).toBe('connecting');
    expect(transport.streams).toHaveLength(1);
  });

  it('closes the stream and all timers when the page is hidden, and resumes when shown', () => {
    const { transport, model, clock } = setup();
    model.setNeeded('status', true);
    transport.last.handlers.open();
    transport.last.handlers.message(snapshot(1_700_000_000, [kernel({ execution_state: 'busy', busy_since: 1_700_000_000 })]));
    expect(model.mode).toBe('streaming');
    expect(clock.pending).toEqual([1000]); // the busy-timer tick

    model.setHidden(true);
    expect(model.mode).toBe('standby');
    expect(transport.open).toHaveLength(0);
    expect(clock.pending).toEqual([]);
    // Readings are kept for when the page comes back.
    expect(model.snapshot?.time).toBe(1_700_000_000);

    model.setHidden(false);
    expect(model.mode).toBe('connecting');
    expect(transport.open).toHaveLength(1);
  });

  it('stands by when the last view stops needing data', () => {
    const { transport, model } = setup();
    model.setNeeded('panel', true);
    model.setNeeded('status', true);
    model.setNeeded('panel', false);
    expect(model.mode).toBe('connecting');
    model.setNeeded('status', false);
    expect(model.mode).toBe('standby');
    expect(transport.open).toHaveLength(0);
  });

  it('ignores messages from a stream it has closed', () => {
    const { transport, model } = setup();
    model.setNeeded('panel', true);
    const stale = transport.last;
    model.setNeeded('panel', false);
    model.setNeeded('panel', true);
    stale.handlers.message(snapshot(5));
    stale.handlers.close();
    expect(model.snapshot).toBeNull();
    expect(model.mode).toBe('connecting');
  });
});

describe('MetricsModel reconnects', () => {
  it('polls while the stream is down and reconnects with backoff 1 s, 2 s, 4 s, 8 s, 8 s', async () => {
    const { transport, model, clock } = setup({ refreshInterval: 2000 });
    model.setNeeded('panel', true);

    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const before = transport.streams.length;
      transport.last.handlers.close(); // the attempt fails
      expect(model.mode).toBe('polling');
      const start = clock.now;
      while (transport.streams.length === before) {
        clock.advance(100);
      }
      delays.push(clock.now - start);
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000]);
    expect(model.attempt).toBe(5);
    await flush();
    // Polling ran every refresh interval meanwhile: once at the drop, then each 2 s of 23 s.
    expect(transport.fetches).toBe(1 + Math.floor(23000 / 2000));
    expect(model.snapshot).not.toBeNull();

    transport.last.handlers.open();
    expect(model.mode).toBe('streaming');
    expect(model.attempt).toBe(0);
    const fetches = transport.fetches;
    clock.advance(10000);
    expect(transport.fetches).toBe(fetches); // no polling while streaming
  });

  it('restarts the backoff from 1 s after a successful reconnect', () => {
    const { transport, model, clock } = setup();
    model.setNeeded('panel', true);
    transport.last.handlers.close();
    clock.advance(1000);
    transport.last.handlers.close();
    clock.advance(2000);
    transport.last.handlers.open();
    transport.last.handlers.close(); // drops again later
    expect(clock.pending).toContain(1000);
  });

  it('keeps the last error from polling and clears it with the next snapshot', async () => {
    const { transport, model, clock } = setup();
    transport.nextFetch = () => Promise.reject(new Error('503 Service Unavailable'));
    model.setNeeded('panel', true);
    transport.last.handlers.close();
    await flush();
    expect(model.error).toBe('503 Service Unavailable');
    transport.nextFetch = () => Promise.resolve(snapshot(9));
    clock.advance(2000);
    await flush();
    expect(model.error).toBeNull();
    expect(model.snapshot?.time).toBe(9);
  });
});

const REASON =
  'jupyter_torchlab did not load: jupyter_server 2.12.0 is older than jupyter-torchlab needs ' +
  "(cannot import name 'ws_authenticated'). Upgrade jupyter_server to 2.13 or later " +
  "(pip install --upgrade 'jupyter_server>=2.13'), then restart the Jupyter server.";

/** What the routes of an extension that did not load answer. */
const notLoaded = (message = REASON) =>
  describeFailure('/torchlab/api/metrics', 503, 'Service Unavailable', {
    message,
    reason: 'jupyter_torchlab did not load'
  });

describe('MetricsModel when the server extension is not loaded', () => {
  it('opens no stream when the page says why, and asks again only every backoff.max', async () => {
    const { transport, model, clock } = setup();
    transport.nextFetch = () => Promise.reject(notLoaded());
    model.setUnavailable(REASON);
    model.setNeeded('status', true);
    expect(model.mode).toBe('unavailable');
    expect(model.unavailable).toBe(REASON);
    expect(model.error).toBe(REASON);
    expect(transport.streams).toHaveLength(0);
    clock.advance(7999);
    expect(transport.fetches).toBe(0);
    clock.advance(1);
    expect(transport.fetches).toBe(1);
    await flush();
    for (let i = 0; i < 3; i++) {
      clock.advance(8000);
      await flush();
    }
    expect(transport.fetches).toBe(4);
    expect(transport.streams).toHaveLength(0);
    expect(model.unavailable).toBe(REASON);
  });

  it('stops polling every refresh interval once a poll says the extension did not load', async () => {
    const { transport, model, clock } = setup({ refreshInterval: 2000 });
    transport.nextFetch = () => Promise.reject(notLoaded());
    model.setNeeded('panel', true);
    transport.last.handlers.close(); // the stream's upgrade was refused
    await flush();
    expect(model.mode).toBe('unavailable');
    expect(model.unavailable).toBe(REASON);
    const streams = transport.streams.length;
    clock.advance(7000);
    await flush();
    expect(transport.fetches).toBe(1); // not one every 2 s
    expect(transport.streams).toHaveLength(streams); // no reconnects either
  });

  it('keeps polling through other errors (a busy server is not a missing extension)', async () => {
    const { transport, model } = setup({ refreshInterval: 2000 });
    transport.nextFetch = () =>
      Promise.reject(
        describeFailure('/torchlab/api/metrics', 503, 'Service Unavailable', {
          message: 'no sample yet: the torchlab sampler has not produced one',
          reason: 'Service Unavailable'
        })
      );
    model.setNeeded('panel', true);
    transport.last.handlers.close();
    await flush();
    expect(model.mode).toBe('polling');
    expect(model.unavailable).toBeNull();
    expect(model.error).toBe('no sample yet: the torchlab sampler has not produced one');
  });

  it('streams again once the restarted server answers, and forgets the reason', async () => {
    const { transport, model, clock } = setup();
    model.setUnavailable(REASON);
    model.setNeeded('panel', true);
    transport.nextFetch = () => Promise.resolve(snapshot(5));
    clock.advance(8000);
    await flush();
    expect(model.unavailable).toBeNull();
    expect(model.error).toBeNull();
    expect(model.snapshot?.time).toBe(5);
    expect(model.mode).toBe('connecting');
    transport.last.handlers.open();
    expect(model.mode).toBe('streaming');
  });

  it('stands by while hidden and resumes asking when shown', () => {
    const { transport, model, clock } = setup();
    model.setUnavailable(REASON);
    model.setNeeded('panel', true);
    model.setHidden(true);
    expect(model.mode).toBe('standby');
    clock.advance(60000);
    expect(transport.fetches).toBe(0);
    model.setHidden(false);
    expect(model.mode).toBe('unavailable');
    expect(model.unavailable).toBe(REASON);
    expect(transport.streams).toHaveLength(0);
  });
});

describe('describeFailure', () => {
  it('passes on the cause and the fix of an extension that did not load', () => {
    const failure = notLoaded();
    expect(failure.message).toBe(REASON);
    expect(failure.unavailable).toBe(true);
  });

  it('says that a bare 404 means the extension is not loaded, and where to find why', () => {
    const failure = describeFailure('/a/torchlab/api/metrics', 404, 'Not Found', '<html>…');
    expect(failure.unavailable).toBe(true);
    expect(failure.message).toBe(notLoadedMessage('/a/torchlab/api/metrics'));
    expect(failure.message).toContain(
      '/a/torchlab/api/metrics was not found: the jupyter_torchlab server extension is not ' +
        'loaded in this Jupyter server.'
    );
    expect(failure.message).toContain('The server log says why');
    expect(failure.message).toContain('`jupyter torchlab doctor`');
    // it is enabled but failed, as often as it is disabled: "enable it" would mislead
    expect(failure.message).not.toContain('enable');
  });

  it("keeps our handlers' own messages, which are not about loading", () => {
    const failure = describeFailure('/torchlab/api/tutorial', 404, 'Not Found', {
      message: 'No such directory: nb'
    });
    expect(failure).toMatchObject({ message: 'No such directory: nb', unavailable: false });
    expect(describeFailure('/x', 500, 'Internal Server Error', '')).toMatchObject({
      message: '500 Internal Server Error',
      unavailable: false
    });
  });
});

describe('MetricsModel busy timer', () => {
  it('counts the busy time up locally between snapshots, by the server clock', () => {
    const { transport, model, clock, changes } = setup();
    model.setNeeded('status', true);
    transport.last.handlers.open();
    // The server clock is 3 s behind the browser; the kernel went busy 2 s before the sample.
    const serverNow = clock.now / 1000 - 3;
    const busy = kernel({ execution_state: 'busy', busy_since: serverNow - 2 });
    transport.last.handlers.message(snapshot(serverNow, [busy]));
    expect(model.busySeconds(model.kernel('k1')!)).toBeCloseTo(2);

    const before = changes();
    clock.advance(3000);
    expect(changes() - before).toBe(3); // one re-render per second
    expect(model.busySeconds(model.kernel('k1')!)).toBeCloseTo(5);
  });

  it('stops ticking once no kernel is busy', () => {
    const { transport, model, clock, changes } = setup();
    model.setNeeded('status', true);
    transport.last.handlers.open();
    transport.last.handlers.message(
      snapshot(1, [kernel({ execution_state: 'busy', busy_since: 0 })])
    );
    transport.last.handlers.message(snapshot(2, [kernel()]));
    clock.advance(1000); // the tick scheduled while busy fires once more
    const before = changes();
    clock.advance(5000);
    expect(changes()).toBe(before);
    expect(model.busySeconds(model.kernel('k1')!)).toBeNull();
  });

  it('returns null for an idle kernel and for unknown ids', () => {
    const { transport, model } = setup();
    model.setNeeded('status', true);
    transport.last.handlers.message(snapshot(1));
    expect(model.busySeconds(model.kernel('k1')!)).toBeNull();
    expect(model.kernel('nope')).toBeNull();
    expect(model.kernel(null)).toBeNull();
  });
});

describe('MetricsModel history', () => {
  it('keeps the last N host readings for the charts', () => {
    const { transport, model } = setup();
    model.setNeeded('panel', true);
    for (let i = 0; i < 5; i++) {
      const s = snapshot(i);
      s.host!.cpu_percent = i * 10;
      transport.last.handlers.message(s);
    }
    expect(model.hostSeries.cpu).toEqual([20, 30, 40]);
    expect(model.hostSeries.memory).toEqual([50, 50, 50]);
  });

  it('tracks each GPU by uuid and forgets GPUs that disappear', () => {
    const { transport, model } = setup();
    model.setNeeded('panel', true);
    const gpu = {
      index: 0,
      name: 'Fake',
      uuid: 'GPU-1',
      utilization_gpu: 80,
      utilization_memory: null,
      memory_used: 250,
      memory_total: 1000,
      temperature: null,
      power_watts: null,
      power_limit_watts: null,
      source: 'nvml'
    };
    const s = snapshot(1);
    s.gpus = [gpu];
    transport.last.handlers.message(s);
    expect(model.gpuSeries(gpu)).toEqual({ utilization: [80], memory: [25] });
    transport.last.handlers.message(snapshot(2));
    expect(model.gpuSeries(gpu)).toEqual({ utilization: [], memory: [] });
  });

  it("keeps each GPU kernel's share and memory over time, against its own GPUs", () => {
    const { transport, model } = setup();
    model.setNeeded('panel', true);
    const gpu = (index: number) => ({
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
      source: 'nvml'
    });
    const send = (time: number, kernels: IKernel[]) => {
      const s = snapshot(time, kernels);
      s.gpus = [gpu(0), gpu(1), gpu(2)];
      transport.last.handlers.message(s);
    };
    const cpuOnly = kernel({ id: 'cpu', gpu_memory: 0, gpu_devices: [] });
    send(1, [kernel({ id: 'k', gpu_memory: null }), cpuOnly]);
    expect(model.kernelGpuSeries('k')).toEqual({ utilization: [], memory: [] });
    expect(model.kernelGpuSeries('cpu')).toEqual({ utilization: [], memory: [] });
    // 500 of the 2000 bytes of GPUs 0 and 2
    send(2, [kernel({ id: 'k', gpu_memory: 500, gpu_devices: [0, 2], gpu_utilization: 30 })]);
    send(3, [kernel({ id: 'k', gpu_memory: 1000, gpu_devices: [0, 2], gpu_utilization: null })]);
    expect(model.kernelGpuSeries('k')).toEqual({ utilization: [30, null], memory: [25, 50] });
    send(4, []); // the kernel is gone
    expect(model.kernelGpuSeries('k')).toEqual({ utilization: [], memory: [] });
  });
});
