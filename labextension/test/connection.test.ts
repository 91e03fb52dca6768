import { Connection, IBackoff } from '../src/connection';
import type { ISnapshot } from '../src/types';
import { describeFailure } from '../src/unavailable';
import { FakeTimers, FakeTransport, notLoaded, REASON, snapshot } from './fixtures';

let timers: FakeTimers;

beforeEach(() => {
  timers = new FakeTimers();
});

afterEach(() => {
  timers.uninstall();
  jest.restoreAllMocks();
});

function setup(options: { refreshInterval?: number; backoff?: IBackoff } = {}) {
  const transport = new FakeTransport();
  const connection = new Connection({
    transport,
    refreshInterval: options.refreshInterval ?? 2000,
    backoff: options.backoff ?? { initial: 1000, factor: 2, max: 8000 }
  });
  const received: ISnapshot[] = [];
  connection.received.connect((_, s) => received.push(s));
  let changes = 0;
  connection.changed.connect(() => changes++);
  /** Fail or drop the current stream; return the wait, ms, until the next one is opened. */
  const nextStreamAfterClose = async (): Promise<number> => {
    const before = transport.streams.length;
    transport.last.handlers.close();
    const start = timers.now;
    while (transport.streams.length === before) {
      await jest.advanceTimersToNextTimerAsync();
    }
    return timers.now - start;
  };
  return { transport, connection, received, changes: () => changes, nextStreamAfterClose };
}

/** Pin Poll's jitter to its upper bound: the wait grows by the full factor each time. */
const pinJitterHigh = () => jest.spyOn(Math, 'random').mockReturnValue(1 - 1e-9);

describe('Connection stand-by', () => {
  it('opens nothing until a view needs it', async () => {
    const { transport, connection } = setup();
    expect(connection.mode).toBe('standby');
    expect(transport.streams).toHaveLength(0);
    expect(timers.pending).toEqual([]);
    connection.setNeeded('panel', true);
    expect(connection.mode).toBe('connecting');
    await timers.settle(); // Poll starts a tick on a 0 ms timer
    expect(transport.streams).toHaveLength(1);
  });

  it('stands by when the last view stops needing data', async () => {
    const { transport, connection } = setup();
    connection.setNeeded('panel', true);
    connection.setNeeded('status', true);
    connection.setNeeded('panel', false);
    expect(connection.mode).toBe('connecting');
    await timers.settle();
    connection.setNeeded('status', false);
    expect(connection.mode).toBe('standby');
    expect(transport.open).toHaveLength(0);
    expect(timers.pending).toEqual([]);
  });

  it('ignores messages from a stream it has closed', async () => {
    const { transport, connection, received } = setup();
    connection.setNeeded('panel', true);
    await timers.settle();
    const stale = transport.last;
    connection.setNeeded('panel', false);
    connection.setNeeded('panel', true);
    await timers.settle();
    stale.handlers.message(snapshot(5));
    stale.handlers.close();
    expect(received).toEqual([]);
    expect(connection.mode).toBe('connecting');
  });

  it('holds no stream, request or timer while hidden, even while polling; resumes at once', async () => {
    const { transport, connection } = setup();
    connection.setNeeded('panel', true);
    await timers.settle();
    transport.last.handlers.close();
    await timers.settle();
    expect(connection.mode).toBe('polling');
    expect(transport.fetches).toBe(1);

    connection.setHidden(true);
    expect(connection.mode).toBe('standby');
    expect(timers.pending).toEqual([]);
    await timers.advance(60000);
    expect(transport.fetches).toBe(1);
    expect(transport.streams).toHaveLength(1);

    connection.setHidden(false);
    expect(connection.mode).toBe('connecting');
    await timers.settle();
    expect(transport.streams).toHaveLength(2); // a new stream, without waiting out a backoff
    expect(transport.fetches).toBe(1); // and no polling until it fails
  });

  it('drops a fetch that answers after the connection stood by', async () => {
    const { transport, connection, received } = setup();
    let answer: (s: ISnapshot) => void = () => undefined;
    transport.nextFetch = () => new Promise(resolve => (answer = resolve));
    connection.setNeeded('panel', true);
    await timers.settle();
    transport.last.handlers.close();
    await timers.settle();
    connection.setHidden(true);
    answer(snapshot(7));
    await timers.settle();
    expect(received).toEqual([]);
    expect(connection.mode).toBe('standby');
    expect(timers.pending).toEqual([]);
  });
});

describe('Connection reconnects', () => {
  beforeEach(pinJitterHigh);

  it('polls while the stream is down and reconnects with backoff 1 s, 2 s, 4 s, 8 s, 8 s', async () => {
    const { transport, connection, received, nextStreamAfterClose } = setup({
      refreshInterval: 2000
    });
    connection.setNeeded('panel', true);
    await timers.settle();

    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      delays.push(await nextStreamAfterClose()); // the attempt fails
      expect(connection.mode).toBe('polling');
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000]);
    expect(connection.attempt).toBe(5);
    await timers.settle();
    // Polling ran every refresh interval meanwhile: once at the drop, then each 2 s of 23 s.
    expect(transport.fetches).toBe(1 + Math.floor(23000 / 2000));
    expect(received).not.toHaveLength(0);

    transport.last.handlers.open();
    expect(connection.mode).toBe('streaming');
    expect(connection.attempt).toBe(0);
    const fetches = transport.fetches;
    await timers.advance(10000);
    expect(transport.fetches).toBe(fetches); // no polling while streaming
  });

  it('doubles the wait from 1 s up to the 30 s cap by default, and follows other factors', async () => {
    /** Waits before the first 11 reconnects when every attempt fails. */
    const waits = async (backoff?: IBackoff) => {
      const transport = new FakeTransport();
      const connection = new Connection({ transport, backoff });
      connection.setNeeded('panel', true);
      await timers.settle();
      const result: number[] = [];
      for (let i = 0; i < 11; i++) {
        const before = transport.streams.length;
        transport.last.handlers.close();
        const start = timers.now;
        while (transport.streams.length === before) {
          await jest.advanceTimersToNextTimerAsync();
        }
        result.push(timers.now - start);
      }
      connection.dispose();
      return result;
    };
    const defaults = await waits(); // DEFAULT_BACKOFF
    const schedule = [0, 1, 2, 3, 4, 5, 10].map(a => defaults[a]);
    expect(schedule).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect((await waits({ initial: 500, factor: 3, max: 10000 }))[2]).toBe(4500);
  });

  it('restarts the backoff from 1 s after a successful reconnect', async () => {
    const { transport, connection } = setup();
    connection.setNeeded('panel', true);
    await timers.settle();
    transport.last.handlers.close();
    await timers.advance(1000);
    transport.last.handlers.close();
    await timers.advance(2000);
    transport.last.handlers.open();
    transport.last.handlers.close(); // drops again later
    await timers.settle();
    expect(timers.pending).toContain(1000);
  });

  it('keeps the last error from polling and clears it with the next snapshot', async () => {
    const { transport, connection, received } = setup();
    transport.nextFetch = () => Promise.reject(new Error('503 Service Unavailable'));
    connection.setNeeded('panel', true);
    await timers.settle();
    transport.last.handlers.close();
    await timers.settle();
    expect(connection.error).toBe('503 Service Unavailable');
    transport.nextFetch = () => Promise.resolve(snapshot(9));
    await timers.advance(2000);
    expect(connection.error).toBeNull();
    expect(received[received.length - 1].time).toBe(9);
  });

  it('polls at a new refresh interval from the next fetch on, and at least every 250 ms', async () => {
    const { transport, connection } = setup({ refreshInterval: 2000 });
    connection.setNeeded('panel', true);
    await timers.settle();
    transport.last.handlers.open();
    transport.last.handlers.close();
    await timers.settle();
    expect(transport.fetches).toBe(1);
    connection.refreshInterval = 5000;
    await timers.advance(2000); // the fetch already scheduled
    expect(transport.fetches).toBe(2);
    await timers.advance(4999);
    expect(transport.fetches).toBe(2);
    await timers.advance(1);
    expect(transport.fetches).toBe(3);
    connection.refreshInterval = 100;
    expect(connection.refreshInterval).toBe(250);
  });
});

describe("Connection backoff (Poll's jitter)", () => {
  it('waits 1 s after a drop, then a random time between 1 s and twice the last wait, up to the cap', async () => {
    const { connection, nextStreamAfterClose } = setup();
    connection.setNeeded('panel', true);
    await timers.settle();
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      waits.push(await nextStreamAfterClose());
    }
    expect(waits[0]).toBe(1000);
    for (let i = 1; i < waits.length; i++) {
      expect(waits[i]).toBeGreaterThanOrEqual(1000);
      expect(waits[i]).toBeLessThanOrEqual(Math.min(8000, 2 * waits[i - 1]));
    }
    expect(connection.attempt).toBe(12);
  });
});

describe('Connection when the server extension is not loaded', () => {
  it('opens no stream when the page says why, and asks again only every backoff.max', async () => {
    const { transport, connection } = setup();
    transport.nextFetch = () => Promise.reject(notLoaded());
    connection.setUnavailable(REASON);
    connection.setNeeded('status', true);
    expect(connection.mode).toBe('unavailable');
    expect(connection.unavailable).toBe(REASON);
    expect(connection.error).toBe(REASON);
    expect(transport.streams).toHaveLength(0);
    await timers.advance(7999);
    expect(transport.fetches).toBe(0);
    await timers.advance(1);
    expect(transport.fetches).toBe(1);
    await timers.settle();
    for (let i = 0; i < 3; i++) {
      await timers.advance(8000);
    }
    expect(transport.fetches).toBe(4);
    expect(transport.streams).toHaveLength(0);
    expect(connection.unavailable).toBe(REASON);
  });

  it('stops polling every refresh interval once a poll says the extension did not load', async () => {
    const { transport, connection } = setup({ refreshInterval: 2000 });
    transport.nextFetch = () => Promise.reject(notLoaded());
    connection.setNeeded('panel', true);
    await timers.settle();
    transport.last.handlers.close(); // the stream's upgrade was refused
    await timers.settle();
    expect(connection.mode).toBe('unavailable');
    expect(connection.unavailable).toBe(REASON);
    const streams = transport.streams.length;
    await timers.advance(7000);
    expect(transport.fetches).toBe(1); // not one every 2 s
    expect(transport.streams).toHaveLength(streams); // no reconnects either
    expect(timers.pending).toEqual([1000]); // only the probe, at backoff.max
  });

  it('keeps polling through other errors (a busy server is not a missing extension)', async () => {
    const { transport, connection } = setup({ refreshInterval: 2000 });
    transport.nextFetch = () =>
      Promise.reject(
        describeFailure('/torchlab/api/metrics', 503, 'Service Unavailable', {
          message: 'no sample yet: the torchlab sampler has not produced one',
          reason: 'Service Unavailable'
        })
      );
    connection.setNeeded('panel', true);
    await timers.settle();
    transport.last.handlers.close();
    await timers.settle();
    expect(connection.mode).toBe('polling');
    expect(connection.unavailable).toBeNull();
    expect(connection.error).toBe('no sample yet: the torchlab sampler has not produced one');
  });

  it('says a new reason when a probe brings one', async () => {
    const { transport, connection, changes } = setup();
    connection.setUnavailable(REASON);
    connection.setNeeded('panel', true);
    transport.nextFetch = () => Promise.reject(notLoaded('jupyter_torchlab did not load: other'));
    const before = changes();
    await timers.advance(8000);
    expect(connection.unavailable).toBe('jupyter_torchlab did not load: other');
    expect(changes() - before).toBe(1);
    await timers.advance(8000); // the same reason again: nothing to tell
    expect(changes() - before).toBe(1);
  });

  it('streams again once the restarted server answers, and forgets the reason', async () => {
    const { transport, connection, received } = setup();
    connection.setUnavailable(REASON);
    connection.setNeeded('panel', true);
    transport.nextFetch = () => Promise.resolve(snapshot(5));
    await timers.advance(8000);
    await timers.settle();
    expect(connection.unavailable).toBeNull();
    expect(connection.error).toBeNull();
    expect(received[received.length - 1].time).toBe(5);
    expect(connection.mode).toBe('connecting');
    transport.last.handlers.open();
    expect(connection.mode).toBe('streaming');
    expect(timers.pending).toEqual([]); // the probe stopped
  });

  it('stands by while hidden and resumes asking when shown', async () => {
    const { transport, connection } = setup();
    connection.setUnavailable(REASON);
    connection.setNeeded('panel', true);
    connection.setHidden(true);
    expect(connection.mode).toBe('standby');
    await timers.advance(60000);
    expect(transport.fetches).toBe(0);
    connection.setHidden(false);
    expect(connection.mode).toBe('unavailable');
    expect(connection.unavailable).toBe(REASON);
    expect(transport.streams).toHaveLength(0);
    await timers.advance(8000);
    expect(transport.fetches).toBe(1);
  });
});

describe('Connection history', () => {
  it('loads the server history once, on the first start', async () => {
    const transport = new FakeTransport();
    const asked: number[] = [];
    transport.fetchHistory = (seconds: number) => {
      asked.push(seconds);
      return Promise.resolve([snapshot(1), snapshot(2)]);
    };
    const connection = new Connection({ transport, historySeconds: 120 });
    const history: number[][] = [];
    connection.historyReceived.connect((_, snapshots) => history.push(snapshots.map(s => s.time)));
    connection.setNeeded('panel', true);
    await timers.settle();
    connection.setNeeded('panel', false);
    connection.setNeeded('panel', true);
    await timers.settle();
    expect(asked).toEqual([120]);
    expect(history).toEqual([[1, 2]]);
    connection.dispose();
  });

  it('drops a history that arrives after the connection stood by', async () => {
    const transport = new FakeTransport();
    transport.fetchHistory = () => Promise.resolve([snapshot(1)]);
    const connection = new Connection({ transport, historySeconds: 120 });
    const history: ISnapshot[][] = [];
    connection.historyReceived.connect((_, snapshots) => history.push(snapshots));
    connection.setNeeded('panel', true);
    connection.setHidden(true);
    await timers.settle();
    expect(history).toEqual([]);
    connection.dispose();
  });
});
