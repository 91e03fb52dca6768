import {
  allRuns,
  currentRun,
  placeholderPlan,
  restoreDecision,
  runEndMessage,
  runFigures,
  runsByCell,
  runStatusText,
  RunWatch,
  MISSED_SLACK
} from '../src/runs';
import { RunsSeenStore } from '../src/endNotices';
import type { IRun } from '../src/types';
import { kernel, run, snapshot } from './fixtures';

/** A document whose kernels hold these runs (each run lands in its kernel_id's entry). */
function doc(time: number, runs: IRun[], kernelIds: string[] = ['k1', 'k2']) {
  return snapshot(
    time,
    kernelIds.map(id => kernel({ id, runs: runs.filter(r => r.kernel_id === id) }))
  );
}

const ended = (r: IRun, state: IRun['state'], at: number, extra: Partial<IRun> = {}): IRun => ({
  ...r,
  state,
  ended: at,
  updated: at,
  ...extra
});

describe('allRuns', () => {
  it('lists running runs across notebooks first, the longest running first, then the latest ended', () => {
    const a = run({ id: 'a', started: 200, path: 'a.ipynb' });
    const b = run({ id: 'b', kernel_id: 'k2', started: 100, path: 'b.ipynb' });
    const old = ended(run({ id: 'old', started: 10 }), 'finished', 50);
    const recent = ended(run({ id: 'recent', kernel_id: 'k2', started: 20 }), 'failed', 90);
    const list = allRuns(doc(300, [a, old, b, recent]));
    expect(list.map(r => r.id)).toEqual(['b', 'a', 'recent', 'old']);
    expect(allRuns(null)).toEqual([]);
  });

  it('reads documents from servers that publish no runs', () => {
    expect(allRuns(snapshot(1, [kernel()]))).toEqual([]);
  });
});

describe('RunWatch: ends between documents', () => {
  it('tells a run that stops running, once', () => {
    const watch = new RunWatch();
    const r = run();
    expect(watch.update(doc(1, [r]))).toEqual([]);
    expect(watch.update(doc(2, [{ ...r, n: 60 }]))).toEqual([]);
    const done = ended(r, 'finished', 3, { n: 100 });
    expect(watch.update(doc(3, [done]))).toEqual([done]);
    expect(watch.update(doc(4, [done]))).toEqual([]);
  });

  it('tells failed and interrupted runs too, with what they say', () => {
    const watch = new RunWatch();
    const a = run({ id: 'a', msg_id: 'm1' });
    const b = run({ id: 'b', kernel_id: 'k2', msg_id: 'm2' });
    watch.update(doc(1, [a, b]));
    const failed = ended(a, 'failed', 2, { error: 'RuntimeError: CUDA error' });
    const stopped = ended(b, 'interrupted', 2);
    expect(watch.update(doc(2, [failed, stopped]))).toEqual([failed, stopped]);
  });

  it('says nothing of runs that had ended before the page first looked', () => {
    const watch = new RunWatch();
    const done = ended(run(), 'finished', 1);
    expect(watch.update(doc(2, [done]))).toEqual([]);
    expect(watch.update(doc(3, [done]))).toEqual([]);
  });

  it('tells a loop with nested bars once, by its outer bar, when nothing of the cell runs', () => {
    const watch = new RunWatch();
    const outer = run({ id: 'outer', desc: 'epochs', started: 1 });
    const inner1 = run({ id: 'inner1', desc: 'batches', started: 2 });
    watch.update(doc(2, [outer, inner1]));
    // the inner bar ends while the outer one runs on: not the end of the training
    const inner1Done = ended(inner1, 'finished', 3);
    const inner2 = run({ id: 'inner2', desc: 'batches', started: 3 });
    expect(watch.update(doc(3, [outer, inner1Done, inner2]))).toEqual([]);
    const outerDone = ended(outer, 'finished', 9);
    const inner2Done = ended(inner2, 'finished', 9);
    expect(watch.update(doc(9, [outerDone, inner1Done, inner2Done]))).toEqual([outerDone]);
  });

  it('leaves a kernel that went away to the deaths notification', () => {
    const watch = new RunWatch();
    watch.update(doc(1, [run()]));
    expect(watch.update(doc(2, [], ['k2']))).toEqual([]);
  });
});

/** A browser's localStorage, as the pages of one origin share it. */
class MemoryStore {
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  items = new Map<string, string>();
}

describe('RunWatch: runs that ended while no page looked', () => {
  const base = '/user/ada/';
  /** A page of the server at `base` loading in a browser whose storage is `store`. */
  const page = (store: MemoryStore, url = base) => new RunWatch(new RunsSeenStore(store, url));

  it('tells a run that ended after the last page closed, once, on the next page', () => {
    const store = new MemoryStore();
    const r = run({ id: 'r', msg_id: 'm1', started: 990 });
    const before = page(store);
    expect(before.update(doc(1000, [r]))).toEqual([]);
    // the page closes; the run ends an hour later; a page opens the next morning
    const done = ended(r, 'finished', 4600, { n: 100 });
    const next = page(store);
    expect(next.update(doc(9000, [done]))).toEqual([done]);
    expect(next.missed(done)).toBe(true);
    expect(next.update(doc(9001, [done]))).toEqual([]);
    // reloaded, or another tab of the same server: told already
    expect(page(store).update(doc(9010, [done]))).toEqual([]);
  });

  it('tells failed and interrupted runs, a nested loop by its outer bar', () => {
    const store = new MemoryStore();
    page(store).update(doc(1000, []));
    const failed = ended(run({ id: 'f', msg_id: 'm1' }), 'failed', 2000, {
      error: 'RuntimeError: CUDA out of memory'
    });
    const cell = { kernel_id: 'k2', msg_id: 'm2' };
    const outer = ended(run({ id: 'o', ...cell, started: 1 }), 'interrupted', 3000);
    const inner = ended(run({ id: 'i', ...cell, started: 5 }), 'interrupted', 3000);
    const told = page(store).update(doc(5000, [failed, outer, inner]));
    expect(told).toEqual([failed, outer]);
    expect(runEndMessage(told[0])).toContain('failed at 45/100 it after 5 s: RuntimeError: CUDA');
  });

  it('says nothing of runs that ended before a page last looked, nor without any memory', () => {
    const store = new MemoryStore();
    const old = ended(run({ id: 'old' }), 'finished', 500);
    // no page of this browser ever looked at this server: no flood of a day's runs
    expect(page(store).update(doc(1000, [old]))).toEqual([]);
    // a page looked at 1000; the run had ended well before: old news
    expect(page(store).update(doc(2000, [old]))).toEqual([]);
    expect(new RunWatch().update(doc(3000, [ended(run({ id: 'new' }), 'finished', 2500)]))).toEqual(
      []
    );
  });

  it('counts a run that ended just before the last document a page saw as possibly missed', () => {
    // the server read the file a tick after the run ended: the last page saw it running
    const store = new MemoryStore();
    const r = run({ id: 'r', msg_id: 'm1' });
    page(store).update(doc(1000, [r]));
    const done = ended(r, 'finished', 1000 - MISSED_SLACK / 2);
    expect(page(store).update(doc(1500, [done]))).toEqual([done]);
  });

  it('tells a run a page saw end there only; a cell still running is not over', () => {
    const store = new MemoryStore();
    const r = run({ id: 'r', msg_id: 'm1' });
    const open = page(store);
    open.update(doc(1000, [r]));
    const done = ended(r, 'finished', 1001);
    expect(open.update(doc(1002, [done]))).toEqual([done]);
    expect(open.missed(done)).toBe(false);
    expect(page(store).update(doc(1003, [done]))).toEqual([]); // told on the page that saw it
    // a cell whose inner bar ended while its outer bar still runs: not the end yet
    const outer = run({ id: 'o', msg_id: 'm2', started: 1 });
    const inner = ended(run({ id: 'i', msg_id: 'm2', started: 5 }), 'finished', 1004);
    const later = page(store);
    expect(later.update(doc(1010, [outer, inner]))).toEqual([]);
    const outerDone = ended(outer, 'finished', 1020);
    expect(later.update(doc(1021, [outerDone, inner]))).toEqual([outerDone]);
  });

  it('keeps each server apart, and the runs told across pages of the same one', () => {
    const store = new MemoryStore();
    const done = ended(run({ id: 'r' }), 'finished', 2000);
    page(store).update(doc(1000, []));
    page(store, '/user/bob/').update(doc(1000, []));
    const a = page(store);
    const b = page(store);
    expect(a.update(doc(3000, [done]))).toEqual([done]);
    expect(b.update(doc(3000, [done]))).toEqual([]);
    // bob's server has its own memory: a run of the same ids there is its own
    expect(page(store, '/user/bob/').update(doc(3000, [done]))).toEqual([done]);
  });
});

describe('RunsSeenStore', () => {
  it('remembers the latest look, written every few seconds, and the latest runs told', () => {
    const store = new MemoryStore();
    const seen = new RunsSeenStore(store, '/', 3, 5);
    expect(seen.lastLooked()).toBeNull();
    seen.looked(100);
    seen.looked(102); // not written: within 5 s
    expect(seen.lastLooked()).toBe(100);
    seen.looked(106);
    expect(new RunsSeenStore(store, '/').lastLooked()).toBe(106);
    seen.told(['a', 'b']);
    seen.told(['c', 'd']);
    expect(['a', 'b', 'c', 'd'].map(k => seen.wasTold(k))).toEqual([false, true, true, true]);
  });

  it('forgets quietly where storage is blocked, full or holds something else', () => {
    const broken = {
      getItem: () => '{not json',
      setItem: () => {
        throw new Error('QuotaExceededError');
      }
    };
    const seen = new RunsSeenStore(broken, '/');
    seen.looked(1);
    seen.told(['a']);
    expect(seen.lastLooked()).toBeNull();
    expect(seen.wasTold('a')).toBe(false);
    expect(new RunsSeenStore(null, '/').lastLooked()).toBeNull();
  });
});

describe('the words for a run', () => {
  it('fits the status bar: name, percent and time left', () => {
    expect(runStatusText(run())).toBe('train 45% · ETA 12 min');
    expect(runStatusText(run({ n: 99.9, total: 100, eta: 3 }))).toBe('train 99% · ETA 3 s');
    expect(runStatusText(run({ total: null, n: 1200, rate: 12.345 }))).toBe(
      'train 1200 it · 12.35it/s'
    );
    expect(runStatusText(run({ kind: 'fit', desc: 'fit', epoch: 3, epochs: 10 }))).toBe(
      'fit 45% · epoch 3/10 · ETA 12 min'
    );
    expect(runStatusText(run({ desc: '', eta: null }))).toBe('progress 45%');
    // a fit's share is of all its epochs, while n/total counts the batches of this one
    const fit = run({ kind: 'fit', desc: 'fit', n: 5, total: 6, fraction: 0.283 });
    fit.epoch = 3;
    fit.epochs = 10;
    expect(runStatusText(fit)).toBe('fit 28% · epoch 3/10 · ETA 12 min');
    expect(runStatusText(ended(run(), 'failed', 2))).toBe('train 45% · failed');
  });

  it('gives the panel the count, the rate, the time left and the time so far', () => {
    expect(runFigures(run({ elapsed: 65 }))).toBe('45/100 it · 8.91it/s · ETA 12 min · 1 min 05 s');
    expect(runFigures(ended(run({ n: 100 }), 'finished', 2))).toBe('100/100 it · 5 s');
  });

  it('says how a run ended, with its notebook, metrics or error line', () => {
    const base = run({ path: 'work/train.ipynb', n: 100, elapsed: 185, metrics: { loss: 0.5 } });
    expect(runEndMessage(ended(base, 'finished', 2))).toBe(
      'train.ipynb: train finished: 100/100 it in 3 min 05 s (loss=0.5).'
    );
    expect(runEndMessage(ended(base, 'failed', 2, { n: 45, error: 'ValueError: bad batch' }))).toBe(
      'train.ipynb: train failed at 45/100 it after 3 min 05 s: ValueError: bad batch'
    );
    expect(runEndMessage(ended({ ...base, metrics: {} }, 'interrupted', 2))).toBe(
      'train.ipynb: train was interrupted at 100/100 it after 3 min 05 s.'
    );
  });

  it('summarises a notebook by its outermost running bar', () => {
    const outer = run({ id: 'o', started: 1 });
    const inner = run({ id: 'i', started: 2 });
    expect(currentRun([inner, outer])?.id).toBe('o');
    expect(currentRun([ended(outer, 'finished', 3)])).toBeNull();
    expect(currentRun(undefined)).toBeNull();
  });
});

describe("restoreDecision: whether the page draws a cell's run", () => {
  it("draws a running run whose execution this page did not send (a reload, another page's cell)", () => {
    const r = run();
    expect(restoreDecision([r], null, false)).toEqual([r]);
    expect(restoreDecision([r], 'another-msg', false)).toEqual([r]);
  });

  it('leaves the run to the live widget on the page that sent the request', () => {
    expect(restoreDecision([run()], 'msg-1', false)).toBeNull();
  });

  it('keeps the final record once drawn, and draws nothing for a run that ended unseen', () => {
    const done = ended(run(), 'finished', 5);
    expect(restoreDecision([done], null, true)).toEqual([done]);
    expect(restoreDecision([done], null, false)).toBeNull();
    expect(restoreDecision([], null, true)).toBeNull();
  });

  it("draws only the cell's latest execution, nested bars in order", () => {
    const before = ended(run({ id: 'x', msg_id: 'old', started: 1 }), 'finished', 2);
    const outer = run({ id: 'o', msg_id: 'new', started: 10 });
    const inner = run({ id: 'i', msg_id: 'new', started: 11 });
    expect(restoreDecision([inner, before, outer], null, false)).toEqual([outer, inner]);
  });

  it('groups runs by their cell, leaving out runs that name none', () => {
    const cells = runsByCell([run({ id: 'a' }), run({ id: 'b', cell_id: null }), run({ id: 'c', cell_id: 'c2' })]);
    expect(Array.from(cells.keys())).toEqual(['cell0', 'c2']);
  });
});

describe("placeholderPlan: a drawn run and the cell's widget views", () => {
  const view = (rendered: boolean, hidden: boolean) => ({ rendered, hidden });

  it('hides the views that cannot render (a saved "Loading widget..."), never a rendered one', () => {
    expect(placeholderPlan([view(false, false), view(true, false), view(false, false)])).toEqual({
      hide: [0, 2],
      show: [],
      widgetWins: false
    });
  });

  it('has nothing to hide in a cell without widget views (an unsaved notebook)', () => {
    expect(placeholderPlan([])).toEqual({ hide: [], show: [], widgetWins: false });
  });

  it('keeps hidden what still cannot render, and hides nothing twice', () => {
    expect(placeholderPlan([view(false, true)])).toEqual({
      hide: [],
      show: [],
      widgetWins: false
    });
  });

  it('shows a hidden view that rendered while another never does: the drawn record stays', () => {
    // a slider restored after the cell ended; the bar's closed widget: "model not found"
    expect(placeholderPlan([view(true, true), view(false, true)])).toEqual({
      hide: [],
      show: [0],
      widgetWins: false
    });
  });

  it('lets the real widgets win once every hidden view rendered', () => {
    expect(placeholderPlan([view(true, true), view(true, false), view(true, true)])).toEqual({
      hide: [],
      show: [0, 2],
      widgetWins: true
    });
  });

  it('does not call views that rendered from the start a win', () => {
    expect(placeholderPlan([view(true, false)]).widgetWins).toBe(false);
  });
});
