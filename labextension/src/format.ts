/**
 * Pure formatting: numbers in, strings out. No DOM, no JupyterLab imports, so jest tests it
 * with plain asserts.
 */

import type { IKernel, IKernelDeath, ISnapshot } from './types';

/** What is shown where a reading is missing. */
export const MISSING = '–';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Format a byte count with binary units: 512 -> "512 B", 1.5 * 2**30 -> "1.5 GiB". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes) || bytes < 0) {
    return MISSING;
  }
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) {
    return `${Math.round(value)} B`;
  }
  // One decimal while it carries information, none once the number has two digits.
  const text = value < 9.95 ? value.toFixed(1) : Math.round(value).toString();
  return `${text} ${UNITS[unit]}`;
}

/** Format a percentage without decimals: 97.6 -> "98%". */
export function formatPercent(percent: number | null | undefined): string {
  if (percent === null || percent === undefined || !isFinite(percent)) {
    return MISSING;
  }
  return `${Math.round(percent)}%`;
}

/** Format seconds as M:SS or H:MM:SS, like a stopwatch: 5 -> "0:05", 6160 -> "1:42:40". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return MISSING;
  }
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = s.toString().padStart(2, '0');
  if (h > 0) {
    return `${h}:${m.toString().padStart(2, '0')}:${ss}`;
  }
  return `${m}:${ss}`;
}

/** Format a span of time for a sentence: "45 s", "3 min 05 s", "1 h 12 min". */
export function formatSpan(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  if (total < 60) {
    return `${total} s`;
  }
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  if (h > 0) {
    return `${h} h ${m.toString().padStart(2, '0')} min`;
  }
  return `${m} min ${(total % 60).toString().padStart(2, '0')} s`;
}

/** Format how long something took, to the precision that matters (a cell's time):
 * 0.004 -> "4 ms", 2.03 -> "2.0 s", 45 -> "45 s", 133 -> "2 min 13 s" (as formatSpan). */
export function formatElapsed(seconds: number | null | undefined): string {
  const value = seconds !== null && seconds !== undefined && isFinite(seconds) ? Math.max(0, seconds) : 0;
  const ms = Math.floor(value * 1000 + 0.5);
  if (ms < 1000) {
    return `${ms} ms`;
  }
  const tenths = Math.floor(value * 10 + 0.5);
  if (tenths < 100) {
    return `${Math.floor(tenths / 10)}.${tenths % 10} s`;
  }
  if (value < 59.5) {
    return `${Math.floor(value + 0.5)} s`;
  }
  return formatSpan(value);
}

/** Format a change of size with its sign: "+1.2 GiB", "-12 MiB". */
export function formatChange(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes)) {
    return MISSING;
  }
  return (bytes < 0 ? '-' : '+') + formatBytes(Math.abs(bytes));
}

/** Format a unix time as the local clock time a person reads on a notification: "14:05". */
export function formatClock(unixSeconds: number): string {
  const date = new Date(unixSeconds * 1000);
  const pad = (n: number) => n.toString().padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Format a used/total pair: "1.2 GiB / 16 GiB", or just the used part when total is unknown. */
export function formatUsage(
  used: number | null | undefined,
  total: number | null | undefined
): string {
  if (total === null || total === undefined || !(total > 0)) {
    return formatBytes(used);
  }
  return `${formatBytes(used)} / ${formatBytes(total)}`;
}

/** Return used / total in percent, or null when either is unknown. */
export function ratioPercent(
  used: number | null | undefined,
  total: number | null | undefined
): number | null {
  if (used === null || used === undefined || total === null || total === undefined) {
    return null;
  }
  return total > 0 ? (100 * used) / total : null;
}

/** Describe a kernel's state: "busy 0:05" while busy (when the start is known), else the state. */
export function formatState(state: string | null | undefined, busySeconds: number | null): string {
  const name = state || 'unknown';
  if (name === 'busy' && busySeconds !== null) {
    return `busy ${formatDuration(busySeconds)}`;
  }
  return name;
}

/**
 * Describe a kernel's state as a person should read it: a stopped process is "stopped" whatever
 * state the server last saw, since it runs nothing until it is resumed.
 */
export function kernelState(kernel: IKernel, busySeconds: number | null): string {
  if (kernel.stopped) {
    return 'stopped';
  }
  return formatState(kernel.execution_state, busySeconds);
}

/** Return the last segment of a path: "a/b/c.ipynb" -> "c.ipynb". */
export function basename(path: string | null | undefined): string {
  if (!path) {
    return '';
  }
  const parts = path.split('/').filter(p => p !== '');
  return parts.length ? parts[parts.length - 1] : '';
}

export interface IStatusOptions {
  /** Show GPU memory (only when the kernel reports a number for it). */
  showGpu: boolean;
  /** What the kernel runs, after its state ("train 45% · ETA 12 min", runs.ts). */
  runText?: string | null;
}

/** True when the server has no figures for a kernel: not local, and it did not report any. */
export function isUnmeasured(kernel: IKernel): boolean {
  return kernel.pid === null && kernel.source !== 'kernel' && Boolean(kernel.reason);
}

/**
 * Say where a kernel's figures come from, for a tooltip: "pid 1234", or "reported by the
 * kernel 2 s ago" (plus why they are old) for a kernel that is not a local process.
 */
export function usageOrigin(kernel: IKernel): string {
  if (kernel.source === 'kernel') {
    const age = kernel.usage_age;
    const when = age === null || age === undefined ? '' : ` ${Math.round(age)} s ago`;
    return `reported by the kernel${when}${kernel.reason ? `; ${kernel.reason}` : ''}`;
  }
  return kernel.pid === null ? '' : `pid ${kernel.pid}`;
}

/**
 * Compose the status bar text for one kernel:
 * "busy 0:05 · CPU 98% · Mem 512 MiB · GPU 1.2 GiB", or "idle · not local"; while it runs a
 * published run, the run after the state: "busy 0:05 · train 45% · ETA 12 min · CPU 98% · ...".
 */
export function statusText(
  kernel: IKernel,
  busySeconds: number | null,
  options: IStatusOptions
): string {
  const parts = [kernelState(kernel, busySeconds)];
  if (options.runText && !kernel.stopped) {
    parts.push(options.runText);
  }
  if (isUnmeasured(kernel)) {
    parts.push('not local');
    return parts.join(' · ');
  }
  parts.push(`CPU ${formatPercent(kernel.cpu_percent)}`);
  parts.push(`Mem ${formatBytes(kernel.memory)}`);
  if (options.showGpu && kernel.gpu_memory !== null && kernel.gpu_memory !== undefined) {
    parts.push(`GPU ${formatBytes(kernel.gpu_memory)}`);
    if (kernel.gpu_waiting && kernel.execution_state === 'busy') {
      // busy, but the GPU it holds mostly waits: the loop is starved (data, Python)
      parts.push(`GPU idle ${formatPercent(kernel.gpu_waiting.utilization)}`);
    } else if (kernel.holding_idle) {
      parts.push('GPU held idle');
    }
  }
  return parts.join(' · ');
}

/**
 * Map a series to SVG polyline points inside a width x height box, oldest on the left, newest
 * at the right edge; values are clamped to [0, max]. Missing values (null, NaN) are skipped.
 */
export function sparklinePoints(
  values: ReadonlyArray<number | null>,
  width: number,
  height: number,
  max: number,
  capacity: number = values.length
): string {
  const n = Math.max(capacity, values.length, 2);
  const slots = n - 1;
  const offset = n - values.length;
  const points: string[] = [];
  values.forEach((value, i) => {
    if (value === null || !isFinite(value)) {
      return;
    }
    const clamped = Math.min(Math.max(value, 0), max);
    const x = ((offset + i) / slots) * width;
    const y = max > 0 ? height - (clamped / max) * height : height;
    points.push(`${round2(x)},${round2(y)}`);
  });
  return points.join(' ');
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

/**
 * Say in plain words what happened to a kernel that died: "The kernel of train.ipynb was killed
 * by the out-of-memory killer at 23.8 GiB of its 24 GiB memory limit. Use less memory ...".
 */
export function deathMessage(death: IKernelDeath): string {
  const who = death.path
    ? `The kernel of ${basename(death.path)}`
    : `Kernel ${death.kernel_id.slice(0, 8)}`;
  const verb = death.reason.startsWith('killed') ? 'was ' : '';
  const after = death.restarting ? ' A new kernel is starting; the old variables are gone.' : '';
  return `${who} ${verb}${death.reason}${after}`;
}

/** The shares of a memory limit at which displays turn amber, then red (as the Python side). */
export const PRESSURE_WARN = 0.8;
export const PRESSURE_DANGER = 0.95;

export type Pressure = 'ok' | 'warn' | 'danger';

/**
 * How close a kernel is to running out of memory: its process tree against the memory limit
 * (the container's, else the host's), and, when it uses a GPU, the fullest GPU against its size.
 */
export function memoryPressure(kernel: IKernel, snapshot: ISnapshot | null): Pressure {
  const shares: number[] = [];
  const host = snapshot?.host;
  const mark = host ? (host.memory_limit ?? host.memory_total) : null;
  if (kernel.memory !== null && mark) {
    shares.push(kernel.memory / mark);
  }
  if (kernel.gpu_memory) {
    for (const gpu of snapshot?.gpus ?? []) {
      if (gpu.memory_used !== null && gpu.memory_total) {
        shares.push(gpu.memory_used / gpu.memory_total);
      }
    }
  }
  const worst = Math.max(0, ...shares);
  return worst >= PRESSURE_DANGER ? 'danger' : worst >= PRESSURE_WARN ? 'warn' : 'ok';
}

/** What a finished long cell says: the notebook, the cell, how long it ran and how it ended. */
export interface ICellOutcome {
  path: string;
  /** 0-based position of the cell in the notebook. */
  index: number;
  executionCount: number | null;
  seconds: number;
  ok: boolean;
  /** The exception's name and value, when it failed. */
  error?: string | null;
}

/** A one-line title and a sentence for a long cell that finished while nobody was looking. */
export function longCellMessage(cell: ICellOutcome): { title: string; body: string } {
  const where = `cell ${cell.index + 1}${cell.executionCount ? ` [${cell.executionCount}]` : ''}`;
  const name = basename(cell.path);
  const title = cell.ok ? `${name}: ${where} finished` : `${name}: ${where} failed`;
  const body = cell.ok
    ? `${name}, ${where} finished after ${formatSpan(cell.seconds)}.`
    : `${name}, ${where} failed after ${formatSpan(cell.seconds)}${
        cell.error ? `: ${cell.error}` : ''
      }.`;
  return { title, body };
}

/**
 * Whether the idle stretch a notification is about is over: the kernel is gone, ran something,
 * let its GPU memory go or put its GPU to work. A tick whose GPU memory could not be read (a
 * driver hiccup) drops the flag but ends nothing: the notification stays, and is not posted twice.
 */
export function stretchEnded(key: string, kernels: IKernel[]): boolean {
  const kernel = kernels.find(k => key.startsWith(`${k.id}:`));
  if (!kernel || `${kernel.id}:${kernel.idle_since}` !== key) {
    return true;
  }
  return kernel.execution_state !== 'idle' || (kernel.gpu_memory ?? null) !== null;
}

/**
 * Format the time left of a run for a glance (the status bar, a list): "45 s", "12 min",
 * "1 h 12 min". Whole minutes from a minute on: an estimate has no seconds to offer.
 */
export function formatEta(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) {
    return '?';
  }
  const total = Math.floor(seconds + 0.5);
  if (total < 60) {
    return `${total} s`;
  }
  const minutes = Math.floor(total / 60 + 0.5);
  if (minutes < 60) {
    return `${minutes} min`;
  }
  return `${Math.floor(minutes / 60)} h ${(minutes % 60).toString().padStart(2, '0')} min`;
}

const SI_PREFIXES = ['', 'k', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'];

/**
 * Format a rate as tqdm does: 12.345 -> "12.35it/s", 2500 img/s -> "2.50kimg/s"; slower than one
 * per second it flips to seconds per unit (0.25 -> "4.00s/it"); unknown or zero reads "?it/s".
 */
export function formatRate(perSecond: number | null | undefined, unit = 'it'): string {
  if (perSecond === null || perSecond === undefined || !isFinite(perSecond) || perSecond <= 0) {
    return `?${unit}/s`;
  }
  if (perSecond < 1) {
    return `${(1 / perSecond).toFixed(2)}s/${unit}`;
  }
  let value = perSecond;
  let prefix = 0;
  while (value >= 999.995 && prefix < SI_PREFIXES.length - 1) {
    value /= 1000;
    prefix++;
  }
  return `${value.toFixed(2)}${SI_PREFIXES[prefix]}${unit}/s`;
}

/** Python's exponent style: "1.235e+4" -> "1.235e+04". */
function pythonExponent(text: string): string {
  return text.replace(/e([+-])(\d)$/, 'e$10$2');
}

/**
 * Format a metric compactly, as the Python side's format_number: whole numbers as they are, 4
 * significant digits, scientific when tiny or huge: 0.83215 -> "0.8322", 12345.6 -> "1.235e+04".
 */
export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return MISSING;
  }
  if (Number.isNaN(value)) {
    return 'nan';
  }
  if (!isFinite(value)) {
    return value > 0 ? 'inf' : '-inf';
  }
  if (Number.isInteger(value) && Math.abs(value) < 1e6) {
    return value.toString();
  }
  const size = Math.abs(value);
  if (size >= 1e-3 && size < 1e5) {
    // Python's "{:.4g}": trailing zeros dropped
    const [mantissa, exponent] = value.toPrecision(4).split('e');
    const trimmed = mantissa.includes('.') ? mantissa.replace(/\.?0+$/, '') : mantissa;
    return exponent === undefined ? trimmed : pythonExponent(`${trimmed}e${exponent}`);
  }
  return pythonExponent(value.toExponential(3));
}

/** Format metrics as "loss=0.83 · acc=0.91", in their order. */
export function formatMetrics(
  metrics: { [name: string]: number } | null | undefined,
  sep = ' · '
): string {
  return Object.entries(metrics ?? {})
    .map(([name, value]) => `${name}=${formatNumber(value)}`)
    .join(sep);
}
