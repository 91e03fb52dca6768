import { cellExecution, EndNotices, longCellDue } from '../src/endNotices';
import { executionKey } from '../src/runs';
import { run } from './fixtures';

describe('EndNotices: one notification per cell execution', () => {
  const execution = executionKey(run({ kernel_id: 'k1', msg_id: 'msg-1' }));

  it("is the key a cell's request and its runs share", () => {
    expect(cellExecution('k1', 'msg-1')).toBe(execution);
    expect(cellExecution(null, 'msg-1')).toBeNull();
    expect(cellExecution('k1', null)).toBeNull();
  });

  it('skips the long-cell notification once the run of the same execution was told', () => {
    const notices = new EndNotices();
    expect(notices.runEnded(execution)).toEqual({ kind: 'post' });
    notices.told(execution, 'run', 'n1');
    expect(notices.cellEnded(execution)).toEqual({ kind: 'skip' });
    // another execution (the cell ran again, or another kernel) is told on its own
    expect(notices.cellEnded(cellExecution('k1', 'msg-2'))).toEqual({ kind: 'post' });
    expect(notices.cellEnded(cellExecution('k2', 'msg-1'))).toEqual({ kind: 'post' });
  });

  it("puts the run's message in place of a long-cell notification told first", () => {
    const notices = new EndNotices();
    expect(notices.cellEnded(execution)).toEqual({ kind: 'post' });
    notices.told(execution, 'cell', 'n7');
    expect(notices.runEnded(execution)).toEqual({ kind: 'replace', id: 'n7' });
    notices.told(execution, 'run', 'n7');
    expect(notices.runEnded(execution)).toEqual({ kind: 'skip' });
    expect(notices.cellEnded(execution)).toEqual({ kind: 'skip' });
  });

  it('cannot match an execution without a key: each notification is posted', () => {
    const notices = new EndNotices();
    notices.told(null, 'run', 'n1');
    expect(notices.cellEnded(null)).toEqual({ kind: 'post' });
    expect(notices.runEnded(null)).toEqual({ kind: 'post' });
  });

  it('remembers the latest executions only', () => {
    const notices = new EndNotices(2);
    notices.told('k:a', 'cell', '1');
    notices.told('k:b', 'cell', '2');
    notices.told('k:a', 'run', '1'); // told again: now the newest
    notices.told('k:c', 'cell', '3');
    expect(notices.cellEnded('k:b')).toEqual({ kind: 'post' });
    expect(notices.cellEnded('k:a')).toEqual({ kind: 'skip' });
    expect(notices.runEnded('k:c')).toEqual({ kind: 'replace', id: '3' });
  });
});

describe('longCellDue: when long-cell tells a cell ended', () => {
  const end = {
    queuedAt: 1_000,
    previousDone: 0,
    now: 91_000,
    isCode: true,
    enabled: true,
    thresholdSeconds: 60,
    inView: false
  };

  it('tells a code cell this page ran past the threshold while its notebook was not in view', () => {
    expect(longCellDue(end)).toBe(90);
  });

  it('times a cell of "Run all" from when the previous cell finished', () => {
    expect(longCellDue({ ...end, previousDone: 41_000 })).toBeNull(); // 50 s
    expect(longCellDue({ ...end, previousDone: 21_000 })).toBe(70);
  });

  it('says nothing for a short cell, while the user looks, with the setting off, for markdown, or for a cell this page did not run', () => {
    expect(longCellDue({ ...end, now: 60_999 })).toBeNull();
    expect(longCellDue({ ...end, now: 61_000 })).toBe(60);
    expect(longCellDue({ ...end, inView: true })).toBeNull();
    expect(longCellDue({ ...end, enabled: false })).toBeNull();
    expect(longCellDue({ ...end, isCode: false })).toBeNull();
    expect(longCellDue({ ...end, queuedAt: undefined })).toBeNull();
  });
});
