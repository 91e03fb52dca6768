import { MetricsModel } from '../src/model';
import { FakeTimers, FakeTransport, kernel, notLoaded, snapshot } from './fixtures';

let timers: FakeTimers;

beforeEach(() => {
  timers = new FakeTimers();
});

afterEach(() => {
  timers.uninstall();
});

function setup() {
  const transport = new FakeTransport();
  const model = new MetricsModel({
    transport,
    refreshInterval: 2000,
    backoff: { initial: 1000, factor: 2, max: 8000 },
    historyLength: 3
  });
  let changes = 0;
  model.changed.connect(() => changes++);
  return { transport, model, changes: () => changes };
}

/** Set up a model that a view needs, with its stream asked for. */
async function running(who = 'status') {
  const context = setup();
  context.model.setNeeded(who, true);
  await timers.settle();
  return context;
}

describe('MetricsModel stand-by', () => {
  it('closes the stream and all timers when the page is hidden, and resumes when shown', async () => {
    const { transport, model } = await running('status');
    transport.last.handlers.open();
    transport.last.handlers.message(
      snapshot(1_700_000_000, [kernel({ execution_state: 'busy', busy_since: 1_700_000_000 })])
    );
    expect(model.mode).toBe('streaming');
    expect(timers.pending).toEqual([1000]); // the busy-timer tick

    model.setHidden(true);
    expect(model.mode).toBe('standby');
    expect(transport.open).toHaveLength(0);
    expect(timers.pending).toEqual([]);
    // Readings are kept for when the page comes back.
    expect(model.snapshot?.time).toBe(1_700_000_000);

    model.setHidden(false);
    expect(model.mode).toBe('connecting');
    await timers.settle();
    expect(transport.open).toHaveLength(1);
  });

  it('stops the busy clock when the server extension turns out not to be loaded', async () => {
    const { transport, model } = await running();
    transport.last.handlers.message(
      snapshot(1, [kernel({ execution_state: 'busy', busy_since: 0 })])
    );
    expect(timers.pending).toEqual([1000]);
    transport.nextFetch = () => Promise.reject(notLoaded());
    transport.last.handlers.close();
    await timers.settle();
    expect(model.mode).toBe('unavailable');
    expect(model.unavailable).not.toBeNull();
    expect(model.error).toBe(model.unavailable);
    expect(timers.pending).toEqual([8000]); // the probe only
  });
});

describe('MetricsModel busy timer', () => {
  it('counts the busy time up locally between snapshots, by the server clock', async () => {
    const { transport, model, changes } = await running();
    transport.last.handlers.open();
    // The server clock is 3 s behind the browser; the kernel went busy 2 s before the sample.
    const serverNow = timers.now / 1000 - 3;
    const busy = kernel({ execution_state: 'busy', busy_since: serverNow - 2 });
    transport.last.handlers.message(snapshot(serverNow, [busy]));
    expect(model.busySeconds(model.kernel('k1')!)).toBeCloseTo(2);

    const before = changes();
    await timers.advance(3000);
    expect(changes() - before).toBe(3); // one re-render per second
    expect(model.busySeconds(model.kernel('k1')!)).toBeCloseTo(5);
  });

  it('stops ticking once no kernel is busy', async () => {
    const { transport, model, changes } = await running();
    transport.last.handlers.open();
    transport.last.handlers.message(
      snapshot(1, [kernel({ execution_state: 'busy', busy_since: 0 })])
    );
    transport.last.handlers.message(snapshot(2, [kernel()]));
    await timers.advance(1000); // the tick scheduled while busy fires once more
    const before = changes();
    await timers.advance(5000);
    expect(changes()).toBe(before);
    expect(model.busySeconds(model.kernel('k1')!)).toBeNull();
  });

  it('returns null for an idle kernel and for unknown ids', async () => {
    const { transport, model } = await running();
    transport.last.handlers.message(snapshot(1));
    expect(model.busySeconds(model.kernel('k1')!)).toBeNull();
    expect(model.kernel('nope')).toBeNull();
    expect(model.kernel(null)).toBeNull();
  });
});

describe('MetricsModel series', () => {
  it('charts each snapshot, and tells the views once per snapshot', async () => {
    const { transport, model, changes } = await running('panel');
    const before = changes();
    for (let i = 0; i < 5; i++) {
      const s = snapshot(i);
      s.host!.cpu_percent = i * 10;
      transport.last.handlers.message(s);
    }
    expect(changes() - before).toBe(5);
    expect(model.hostSeries.cpu).toEqual([20, 30, 40]);
    expect(model.historyLength).toBe(3);
    expect(model.snapshot?.time).toBe(4);
    expect(model.kernelGpuSeries('k1')).toEqual({ utilization: [], memory: [] });
  });

  it("fills the charts from the server's history unless live data came first", async () => {
    const history = [10, 20].map(cpu => {
      const s = snapshot(cpu);
      s.host!.cpu_percent = cpu;
      return s;
    });
    const make = () => {
      const transport = new FakeTransport();
      let answer: () => void = () => undefined;
      transport.fetchHistory = () => new Promise(resolve => (answer = () => resolve(history)));
      const model = new MetricsModel({ transport, historySeconds: 120 });
      model.setNeeded('panel', true);
      return { transport, model, answer: () => answer() };
    };

    const first = make();
    first.answer();
    await timers.settle();
    expect(first.model.hostSeries.cpu).toEqual([10, 20]);
    expect(first.model.snapshot).toBeNull(); // history is for the charts only

    const late = make();
    await timers.settle();
    late.transport.last.handlers.message(snapshot(30));
    late.answer();
    await timers.settle();
    expect(late.model.hostSeries.cpu).toEqual([25]);
  });
});
