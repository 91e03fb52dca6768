import { guardMessage, guardNotices } from '../src/memoryGuard';
import type { IMemoryGuardEvent } from '../src/types';

const SENTENCE =
  'interrupted at 2.8 GiB of a 3.0 GiB limit to save this kernel; free memory, then continue';

function event(overrides: Partial<IMemoryGuardEvent> = {}): IMemoryGuardEvent {
  return {
    id: 'e1',
    kernel_id: '0123456789abcdef',
    name: 'python3',
    path: 'work/train.ipynb',
    time: 1000,
    pid: 4242,
    memory: 3006477107,
    memory_limit: 3 * 2 ** 30,
    limit_source: 'cgroup',
    measure: 'cgroup',
    fraction: 0.95,
    reason: SENTENCE,
    ...overrides
  };
}

describe('guardMessage', () => {
  it('names the notebook, then says why', () => {
    expect(guardMessage(event())).toBe(`train.ipynb: ${SENTENCE}`);
  });

  it('names a kernel without a notebook by its id', () => {
    expect(guardMessage(event({ path: null }))).toBe(`kernel 01234567: ${SENTENCE}`);
  });
});

describe('guardNotices', () => {
  it('tells each interrupt once, on the page where its notebook is open', () => {
    const told = new Set<string>();
    const open = new Set(['work/train.ipynb']);
    const events = [event(), event({ id: 'e2', path: 'other.ipynb' })];
    expect(guardNotices(events, told, 900, open).map(e => e.id)).toEqual(['e1']);
    expect(guardNotices(events, told, 900, open)).toEqual([]);
    // the other notebook opens later: its interrupt is told then
    open.add('other.ipynb');
    expect(guardNotices(events, told, 900, open).map(e => e.id)).toEqual(['e2']);
  });

  it('leaves out what happened before the page opened', () => {
    const told = new Set<string>();
    expect(guardNotices([event({ time: 800 })], told, 900, null)).toEqual([]);
    expect(told.has('e1')).toBe(true);
  });

  it('tells every interrupt where the page cannot tell which notebooks are open', () => {
    expect(guardNotices([event({ path: null })], new Set(), 900, null)).toHaveLength(1);
    expect(guardNotices(undefined, new Set(), 900, null)).toEqual([]);
  });
});
