import {
  costDetail,
  costFromRecord,
  costLine,
  costPressure,
  ICellCost,
  ICellRecord,
  pressureLimitsKey,
  rankCells,
  readCost,
  watchLimits
} from '../src/cellCost';
import { Signal } from '@lumino/signaling';

import type { ISnapshot } from '../src/types';
import { gpu, snapshot } from './fixtures';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

function record(overrides: Partial<ICellRecord> = {}): ICellRecord {
  return {
    kernel_id: 'k',
    msg_id: 'm',
    start: 1_700_000_000,
    end: 1_700_000_133,
    wall_s: 133,
    cpu_s: 239.4,
    cpu_percent: 180,
    peak_memory: 3.1 * GiB,
    memory_start: 1.9 * GiB,
    memory_delta: 1.2 * GiB,
    gpu_peak_memory: 7.2 * GiB,
    gpu_devices: { '0': 7.2 * GiB },
    exact: ['wall_s', 'cpu_s', 'memory_delta', 'peak_memory', 'gpu_peak_memory'],
    ...overrides
  };
}

function cost(overrides: Partial<ICellCost> = {}): ICellCost {
  return { ...costFromRecord(record()), ...overrides };
}

describe('the line under a cell', () => {
  it("reads as the issue's example", () => {
    expect(costLine(cost())).toBe('2 min 13 s · peak 3.1 GiB (+1.2 GiB) · GPU 7.2 GiB · CPU 180%');
  });

  it('leaves out what was not measured, and the CPU share of a short cell', () => {
    const short = cost({ wall_s: 0.004, cpu_percent: 250, gpu_peak_memory: null, gpu_devices: null });
    expect(costLine(short)).toBe('4 ms · peak 3.1 GiB (+1.2 GiB)');
    const bare = cost({ peak_memory: null, memory_delta: null, gpu_peak_memory: 0, cpu_percent: null });
    expect(costLine(bare)).toBe('2 min 13 s');
  });

  it('shows a freed allocation as a peak above a small change', () => {
    expect(costLine(cost({ wall_s: 2.03, peak_memory: 600 * MiB, memory_delta: -3 * MiB, gpu_peak_memory: null, cpu_percent: 99.6 }))).toBe(
      '2.0 s · peak 600 MiB (-3.0 MiB) · CPU 100%'
    );
  });

  it('says which figures are exact and which sampled', () => {
    const detail = costDetail(cost({ exact: ['wall_s', 'cpu_s'] }));
    expect(detail).toContain('time 2 min 13 s (exact)');
    expect(detail).toContain('peak memory 3.1 GiB (sampled or an upper bound)');
    expect(detail).toContain('peak GPU memory 7.2 GiB (sampled; GPU 0: 7.2 GiB)');
  });
});

describe('stored in the notebook', () => {
  it('round-trips through JSON as the metadata does', () => {
    const stored = JSON.parse(JSON.stringify(costFromRecord(record())));
    expect(readCost(stored)).toEqual(costFromRecord(record()));
    expect(stored.ended).toBe(new Date(1_700_000_133_000).toISOString());
  });

  it('ignores what is not a cost', () => {
    expect(readCost(undefined)).toBeNull();
    expect(readCost({ other: 1 })).toBeNull();
    expect(readCost({ wall_s: 'x' })).toBeNull();
    expect(readCost({ wall_s: 1 })?.peak_memory).toBeNull();
  });
});

describe('near the limits', () => {
  it('turns amber at 80% of the memory limit and red at 95%, as the status bar', () => {
    const doc = snapshot(0);
    doc.host = { ...doc.host!, memory_total: 10 * GiB, memory_limit: null };
    doc.gpus = [];
    expect(costPressure(cost({ peak_memory: 7 * GiB }), doc)).toBe('ok');
    expect(costPressure(cost({ peak_memory: 8 * GiB }), doc)).toBe('warn');
    expect(costPressure(cost({ peak_memory: 9.6 * GiB }), doc)).toBe('danger');
    doc.host = { ...doc.host!, memory_limit: 4 * GiB };
    expect(costPressure(cost({ peak_memory: 3.9 * GiB }), doc)).toBe('danger');
  });

  it('weighs the GPU peak against its own device', () => {
    const doc = snapshot(0);
    doc.host = { ...doc.host!, memory_total: 100 * GiB, memory_limit: null };
    doc.gpus = [gpu(0, { memory_total: 80 * GiB }), gpu(1, { memory_total: 8 * GiB })];
    expect(costPressure(cost({ gpu_devices: { '1': 7.2 * GiB } }), doc)).toBe('warn');
    expect(costPressure(cost({ gpu_devices: { '0': 7.2 * GiB } }), doc)).toBe('ok');
    expect(costPressure(cost(), null)).toBe('ok');
  });
});

describe('the limits the colour depends on', () => {
  function limits(memoryTotal: number, memoryLimit: number | null, gpus: [number, number][]) {
    const doc = snapshot(0);
    doc.host = { ...doc.host!, memory_total: memoryTotal, memory_limit: memoryLimit };
    doc.gpus = gpus.map(([index, total]) => gpu(index, { memory_total: total }));
    return doc;
  }

  it('change with the memory mark and each GPU, and with nothing else', () => {
    const base = limits(10 * GiB, null, [[0, 80 * GiB]]);
    const key = pressureLimitsKey(base);
    // usage moves every snapshot; the limits do not
    const busier = { ...limits(10 * GiB, null, [[0, 80 * GiB]]), time: 5 };
    busier.host = { ...busier.host!, memory_used: 9 * GiB, cpu_percent: 99 };
    busier.gpus = [gpu(0, { memory_total: 80 * GiB, memory_used: 70 * GiB })];
    expect(pressureLimitsKey(busier)).toBe(key);
    expect(pressureLimitsKey(limits(10 * GiB, 4 * GiB, [[0, 80 * GiB]]))).not.toBe(key);
    expect(pressureLimitsKey(limits(12 * GiB, null, [[0, 80 * GiB]]))).not.toBe(key);
    expect(pressureLimitsKey(limits(10 * GiB, null, [[0, 40 * GiB]]))).not.toBe(key);
    expect(pressureLimitsKey(limits(10 * GiB, null, [[1, 80 * GiB]]))).not.toBe(key);
    expect(pressureLimitsKey(limits(10 * GiB, null, []))).not.toBe(key);
    expect(pressureLimitsKey(null)).toBeNull();
  });

  it('is equal exactly where every cell gets the same colour', () => {
    const a = limits(10 * GiB, null, [
      [0, 8 * GiB],
      [1, 80 * GiB]
    ]);
    const b = limits(10 * GiB, null, [
      [1, 80 * GiB],
      [0, 8 * GiB]
    ]);
    expect(pressureLimitsKey(a)).toBe(pressureLimitsKey(b));
    const c = cost({ peak_memory: 8.5 * GiB, gpu_devices: { '0': 7 * GiB } });
    expect(costPressure(c, a)).toBe(costPressure(c, b));
  });

  it('redraws when the first snapshot comes and when the limits change, not per snapshot', () => {
    const source = { snapshot: null as ISnapshot | null, changed: new Signal<unknown, void>({}) };
    let redraws = 0;
    const stop = watchLimits(source, () => redraws++);
    const tick = (doc: ISnapshot | null) => {
      source.snapshot = doc;
      source.changed.emit();
    };
    tick(null); // a mode change before any snapshot
    expect(redraws).toBe(0);
    tick(limits(10 * GiB, null, [])); // the first snapshot after a reload
    expect(redraws).toBe(1);
    // what the footer drawn before it showed, and what the redraw shows
    const c = cost({ peak_memory: 9 * GiB, gpu_devices: null, gpu_peak_memory: null });
    expect(costPressure(c, null)).toBe('ok');
    expect(costPressure(c, source.snapshot)).toBe('warn');
    for (let i = 0; i < 5; i++) {
      tick({ ...limits(10 * GiB, null, []), time: i });
    }
    expect(redraws).toBe(1);
    tick(null); // limits unknown again: what is drawn stays
    expect(redraws).toBe(1);
    tick(limits(10 * GiB, 6 * GiB, [])); // a container limit now applies
    expect(redraws).toBe(2);
    stop();
    tick(limits(20 * GiB, null, []));
    expect(redraws).toBe(2);
  });
});

describe('cells by cost', () => {
  const cells = [
    { id: 'a', index: 0, label: 'load', cost: cost({ wall_s: 3, peak_memory: 5 * GiB }) },
    { id: 'b', index: 1, label: 'train', cost: cost({ wall_s: 300, peak_memory: 2 * GiB }) },
    { id: 'c', index: 2, label: 'plot', cost: cost({ wall_s: 1, peak_memory: null }) }
  ];

  it('sorts by time or by peak memory, most expensive first', () => {
    expect(rankCells(cells, 'time').map(c => c.id)).toEqual(['b', 'a', 'c']);
    expect(rankCells(cells, 'memory').map(c => c.id)).toEqual(['a', 'b', 'c']);
    expect(cells.map(c => c.id)).toEqual(['a', 'b', 'c']); // not sorted in place
  });
});
