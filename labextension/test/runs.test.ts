import {
  allRuns,
  currentRun,
  placeholderPlan,
  restoreDecision,
  runEndMessage,
  runFigures,
  runsByCell,
  runStatusText,
  RunWatch
} from '../src/runs';
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
