import {
  basename,
  deathMessage,
  formatBytes,
  formatChange,
  formatClock,
  formatDuration,
  formatElapsed,
  formatEta,
  formatMetrics,
  formatNumber,
  formatRate,
  formatSpan,
  longCellMessage,
  formatPercent,
  formatState,
  formatUsage,
  isUnmeasured,
  kernelState,
  memoryPressure,
  MISSING,
  ratioPercent,
  sparklinePoints,
  stretchEnded,
  statusText,
  usageOrigin
} from '../src/format';
import type { IKernel, IKernelDeath, ISnapshot } from '../src/types';
// the same cases tests/test_format.py checks the Python side against: one vocabulary
import cases from './format-cases.json';
import { kernel as baseKernel } from './fixtures';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** A busy-looking training kernel: the shared fixture with this file's figures. */
function kernel(overrides: Partial<IKernel> = {}): IKernel {
  return baseKernel({
    pid: 1234,
    cpu_percent: 97.6,
    memory: 512 * MiB,
    path: 'work/train.ipynb',
    ...overrides
  });
}

describe('the vocabulary shared with the Python side', () => {
  const functions: { [kind: string]: (value: number) => string } = {
    duration: formatDuration,
    span: formatSpan,
    bytes: formatBytes,
    eta: formatEta,
    rate: (value: number) => formatRate(value),
    number: formatNumber,
    elapsed: formatElapsed,
    change: formatChange
  };
  for (const kind of Object.keys(functions)) {
    const table = (cases as unknown as { [kind: string]: [number, string][] })[kind];
    it.each(table)(`${kind} %p reads %p`, (value, expected) => {
      expect(functions[kind](value)).toBe(expected);
    });
  }
});

describe('run figures', () => {
  it('says an unknown time left or rate plainly', () => {
    expect(formatEta(null)).toBe('?');
    expect(formatEta(-1)).toBe('?');
    expect(formatRate(null, 'batch')).toBe('?batch/s');
    expect(formatRate(8.91, 'batch')).toBe('8.91batch/s');
  });

  it('writes metrics in their order, compactly', () => {
    expect(formatMetrics({ loss: 0.83215, acc: 0.5 })).toBe('loss=0.8321 · acc=0.5');
    expect(formatMetrics({})).toBe('');
    expect(formatNumber(NaN)).toBe('nan');
    expect(formatNumber(-Infinity)).toBe('-inf');
  });
});

describe('formatBytes', () => {
  it('uses binary units with one decimal below ten', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(512 * MiB)).toBe('512 MiB');
    expect(formatBytes(1.5 * GiB)).toBe('1.5 GiB');
    expect(formatBytes(15.4 * GiB)).toBe('15 GiB');
    expect(formatBytes(2 ** 40)).toBe('1.0 TiB');
  });

  it('does not print 10.0 for values that round up', () => {
    expect(formatBytes(9.96 * GiB)).toBe('10 GiB');
  });

  it('shows a dash for unreadable values', () => {
    expect(formatBytes(null)).toBe(MISSING);
    expect(formatBytes(undefined)).toBe(MISSING);
    expect(formatBytes(NaN)).toBe(MISSING);
    expect(formatBytes(-1)).toBe(MISSING);
  });
});

describe('formatPercent', () => {
  it('rounds to whole percent and keeps values above 100 (several cores)', () => {
    expect(formatPercent(97.6)).toBe('98%');
    expect(formatPercent(0)).toBe('0%');
    expect(formatPercent(350.2)).toBe('350%');
    expect(formatPercent(null)).toBe(MISSING);
  });
});

describe('formatDuration', () => {
  it('reads like a stopwatch', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(5)).toBe('0:05');
    expect(formatDuration(5.99)).toBe('0:05');
    expect(formatDuration(65)).toBe('1:05');
    expect(formatDuration(3600)).toBe('1:00:00');
    expect(formatDuration(6160)).toBe('1:42:40');
    expect(formatDuration(90000)).toBe('25:00:00');
  });

  it('clamps negative durations (clock skew) to zero', () => {
    expect(formatDuration(-3)).toBe('0:00');
    expect(formatDuration(null)).toBe(MISSING);
  });
});

describe('formatUsage and ratioPercent', () => {
  it('shows used of total when the total is known', () => {
    expect(formatUsage(1.5 * GiB, 16 * GiB)).toBe('1.5 GiB / 16 GiB');
    expect(formatUsage(1.5 * GiB, null)).toBe('1.5 GiB');
    expect(ratioPercent(GiB, 4 * GiB)).toBe(25);
    expect(ratioPercent(GiB, 0)).toBeNull();
    expect(ratioPercent(null, GiB)).toBeNull();
  });
});

describe('formatState', () => {
  it('adds the running time only while busy', () => {
    expect(formatState('busy', 5)).toBe('busy 0:05');
    expect(formatState('busy', null)).toBe('busy');
    expect(formatState('idle', 5)).toBe('idle');
    expect(formatState('', null)).toBe('unknown');
  });
});

describe('kernelState', () => {
  it('says stopped for a stopped process, whatever state the server last saw', () => {
    expect(kernelState(kernel({ stopped: true, execution_state: 'busy' }), 30)).toBe('stopped');
    expect(kernelState(kernel({ stopped: false, execution_state: 'busy' }), 30)).toBe('busy 0:30');
    expect(kernelState(kernel({ stopped: null }), null)).toBe('idle');
    expect(kernelState(kernel(), null)).toBe('idle'); // a server without the field
  });

  it('shows in the status bar text', () => {
    const k = kernel({ stopped: true, execution_state: 'busy', cpu_percent: 0 });
    expect(statusText(k, 12, { showGpu: false })).toBe('stopped · CPU 0% · Mem 512 MiB');
  });
});

describe('basename', () => {
  it('returns the file name of a notebook path', () => {
    expect(basename('a/b/c.ipynb')).toBe('c.ipynb');
    expect(basename('c.ipynb')).toBe('c.ipynb');
    expect(basename('dir/')).toBe('dir');
    expect(basename(null)).toBe('');
  });
});

describe('statusText', () => {
  it('shows state, CPU and memory of a local kernel', () => {
    expect(statusText(kernel(), null, { showGpu: true })).toBe('idle · CPU 98% · Mem 512 MiB');
  });

  it('shows the busy time and GPU memory when there is some', () => {
    const k = kernel({ execution_state: 'busy', gpu_memory: 1.2 * GiB });
    expect(statusText(k, 65, { showGpu: true })).toBe(
      'busy 1:05 · CPU 98% · Mem 512 MiB · GPU 1.2 GiB'
    );
    expect(statusText(k, 65, { showGpu: false })).toBe('busy 1:05 · CPU 98% · Mem 512 MiB');
  });

  it("adds the kernel's run after its state, but not to a stopped process", () => {
    const k = kernel({ execution_state: 'busy' });
    const runText = 'train 45% · ETA 12 min';
    expect(statusText(k, 65, { showGpu: false, runText })).toBe(
      'busy 1:05 · train 45% · ETA 12 min · CPU 98% · Mem 512 MiB'
    );
    expect(statusText(kernel({ stopped: true }), 65, { showGpu: false, runText })).toBe(
      'stopped · CPU 98% · Mem 512 MiB'
    );
  });

  it('says when a busy kernel leaves its GPU idle, or an idle one sits on GPU memory', () => {
    const waiting = kernel({
      execution_state: 'busy',
      gpu_memory: 2 * GiB,
      gpu_waiting: { seconds: 45, utilization: 3.2 }
    });
    expect(statusText(waiting, 65, { showGpu: true })).toBe(
      'busy 1:05 · CPU 98% · Mem 512 MiB · GPU 2.0 GiB · GPU idle 3%'
    );
    const holder = kernel({ gpu_memory: 2 * GiB, holding_idle: { seconds: 4000, bytes: 2 * GiB } });
    expect(statusText(holder, null, { showGpu: true })).toBe(
      'idle · CPU 98% · Mem 512 MiB · GPU 2.0 GiB · GPU held idle'
    );
  });

  it('says when the kernel is not a local process', () => {
    const k = kernel({ pid: null, cpu_percent: null, memory: null, reason: 'kernel is remote' });
    expect(statusText(k, null, { showGpu: true })).toBe('idle · not local');
    expect(usageOrigin(k)).toBe('');
  });

  it('shows the figures a kernel that is not local reported, and where they come from', () => {
    const k = kernel({ pid: null, source: 'kernel', usage_age: 1.6 });
    expect(statusText(k, null, { showGpu: false })).toBe('idle · CPU 98% · Mem 512 MiB');
    expect(usageOrigin(k)).toBe('reported by the kernel 2 s ago');
    // old figures stay visible; the reason says why they are old
    const late = kernel({ pid: null, source: 'kernel', usage_age: 12, reason: 'no answer' });
    expect(isUnmeasured(late)).toBe(false);
    expect(usageOrigin(late)).toBe('reported by the kernel 12 s ago; no answer');
    expect(usageOrigin(kernel({ source: 'process' }))).toBe('pid 1234');
  });
});

describe('sparklinePoints', () => {
  it('puts the newest value at the right edge and scales to the box', () => {
    expect(sparklinePoints([0, 50, 100], 100, 10, 100)).toBe('0,10 50,5 100,0');
  });

  it('leaves room on the left while the history is shorter than its capacity', () => {
    expect(sparklinePoints([100, 0], 100, 10, 100, 5)).toBe('75,0 100,10');
  });

  it('clamps out-of-range values and skips missing ones', () => {
    expect(sparklinePoints([150, null, -5], 10, 10, 100)).toBe('0,0 10,10');
    expect(sparklinePoints([], 10, 10, 100)).toBe('');
  });

  it('draws a single value as a point at the right edge', () => {
    expect(sparklinePoints([50], 10, 10, 100)).toBe('10,5');
  });
});

describe('deathMessage', () => {
  const death = (overrides: Partial<IKernelDeath> = {}): IKernelDeath => ({
    id: 'e1',
    kernel_id: 'abcdef0123456789',
    name: 'python3',
    path: 'work/train.ipynb',
    time: 1,
    pid: 42,
    cause: 'oom_killer',
    reason: 'killed by the out-of-memory killer at 23.8 GiB of its 24 GiB memory limit. Use less',
    signal: 9,
    exit_status: null,
    last_memory: null,
    peak_memory: null,
    memory_limit: null,
    restarting: true,
    ...overrides
  });

  it('names the notebook, the cause and that the variables are gone', () => {
    expect(deathMessage(death())).toBe(
      'The kernel of train.ipynb was killed by the out-of-memory killer at 23.8 GiB of its ' +
        '24 GiB memory limit. Use less A new kernel is starting; the old variables are gone.'
    );
  });

  it('reads for an exit and for a kernel without a notebook', () => {
    const exited = death({ path: null, reason: 'exited with status 1', restarting: false });
    expect(deathMessage(exited)).toBe('Kernel abcdef01 exited with status 1');
  });
});

describe('memoryPressure', () => {
  const snap = (limit: number | null, gpuUsed: number | null = null): ISnapshot =>
    ({
      time: 1,
      host: { memory_total: 64 * GiB, memory_limit: limit } as ISnapshot['host'],
      gpus:
        gpuUsed === null
          ? []
          : [{ index: 0, memory_used: gpuUsed, memory_total: 80 * GiB } as ISnapshot['gpus'][0]],
      gpu_reason: null,
      kernels: [],
      errors: {}
    }) as ISnapshot;

  it('turns amber at 80% and red at 95% of the memory limit', () => {
    expect(memoryPressure(kernel({ memory: 1 * GiB }), snap(4 * GiB))).toBe('ok');
    expect(memoryPressure(kernel({ memory: 3.3 * GiB }), snap(4 * GiB))).toBe('warn');
    expect(memoryPressure(kernel({ memory: 3.9 * GiB }), snap(4 * GiB))).toBe('danger');
    expect(memoryPressure(kernel({ memory: 60 * GiB }), snap(null))).toBe('warn'); // host total
    expect(memoryPressure(kernel(), null)).toBe('ok');
  });

  it('counts a full GPU only for a kernel that uses one', () => {
    expect(memoryPressure(kernel({ gpu_memory: 10 * GiB }), snap(null, 79 * GiB))).toBe('danger');
    expect(memoryPressure(kernel({ gpu_memory: null }), snap(null, 79 * GiB))).toBe('ok');
  });
});

describe('formatSpan', () => {
  it('reads like a sentence', () => {
    expect(formatSpan(0.4)).toBe('0 s');
    expect(formatSpan(45)).toBe('45 s');
    expect(formatSpan(185)).toBe('3 min 05 s');
    expect(formatSpan(4320)).toBe('1 h 12 min');
    expect(formatSpan(-2)).toBe('0 s');
  });
});

describe('longCellMessage', () => {
  it('names the notebook, the cell, the time and the outcome', () => {
    const ok = longCellMessage({
      path: 'runs/train.ipynb',
      index: 2,
      executionCount: 12,
      seconds: 2460,
      ok: true
    });
    expect(ok.title).toBe('train.ipynb: cell 3 [12] finished');
    expect(ok.body).toBe('train.ipynb, cell 3 [12] finished after 41 min 00 s.');
    const failed = longCellMessage({
      path: 'train.ipynb',
      index: 0,
      executionCount: null,
      seconds: 75,
      ok: false,
      error: 'OutOfMemoryError: CUDA out of memory'
    });
    expect(failed.title).toBe('train.ipynb: cell 1 failed');
    expect(failed.body).toBe(
      'train.ipynb, cell 1 failed after 1 min 15 s: OutOfMemoryError: CUDA out of memory.'
    );
  });
});

describe('stretchEnded', () => {
  const idle = (overrides: Partial<IKernel> = {}) =>
    kernel({ execution_state: 'idle', idle_since: 100, gpu_memory: 4 * GiB, ...overrides });
  it('keeps the notification through a tick whose GPU memory could not be read', () => {
    expect(stretchEnded('k1:100', [idle({ gpu_memory: null })])).toBe(false);
  });
  it('ends it when the kernel ran something, freed its memory, worked the GPU or went', () => {
    expect(stretchEnded('k1:100', [idle({ idle_since: 250 })])).toBe(true);
    expect(stretchEnded('k1:100', [idle({ execution_state: 'busy' })])).toBe(true);
    expect(stretchEnded('k1:100', [idle({ gpu_memory: 0 })])).toBe(true);
    expect(stretchEnded('k1:100', [idle()])).toBe(true); // held and known, but not flagged
    expect(stretchEnded('k1:100', [])).toBe(true);
  });
});

describe('formatClock', () => {
  it('reads a unix time as the local hours and minutes', () => {
    const at = new Date(2026, 11, 5, 9, 7, 30).getTime() / 1000;
    expect(formatClock(at)).toBe('09:07');
    expect(formatClock(new Date(2026, 11, 5, 23, 59).getTime() / 1000)).toBe('23:59');
  });
});
