/**
 * What a cell cost, as kept in its metadata under `torchlab` and read back: pure functions from
 * the server's record (GET torchlab/api/cells) to the stored figures, the line under the cell,
 * how close it came to the limits (and when those limits change), and the notebook's cells ranked
 * by cost.
 */
import {
  formatBytes,
  formatChange,
  formatElapsed,
  formatPercent,
  Pressure,
  PRESSURE_DANGER,
  PRESSURE_WARN
} from './format';
import type { ISignal } from '@lumino/signaling';

import type { ISnapshot } from './types';

/** The metadata key a cell's cost is stored under. */
export const METADATA_KEY = 'torchlab';

/** One cell's record as the server sends it (server/cells.py). */
export interface ICellRecord {
  kernel_id: string;
  msg_id: string;
  start: number;
  end: number;
  wall_s: number;
  cpu_s: number | null;
  cpu_percent: number | null;
  peak_memory: number | null;
  memory_start: number | null;
  memory_delta: number | null;
  gpu_peak_memory: number | null;
  gpu_devices: { [index: string]: number } | null;
  exact: string[];
}

/** What a cell's metadata keeps (JSON: a saved, shared or exported notebook carries it). */
export interface ICellCost {
  wall_s: number;
  peak_memory: number | null;
  memory_delta: number | null;
  memory_start: number | null;
  gpu_peak_memory: number | null;
  gpu_devices: { [index: string]: number } | null;
  cpu_s: number | null;
  cpu_percent: number | null;
  /** The figures that are exact; the others were sampled. */
  exact: string[];
  /** When the cell ended (ISO 8601). */
  ended: string;
}

/** Turn the server's record into what the cell's metadata keeps. */
export function costFromRecord(record: ICellRecord): ICellCost {
  return {
    wall_s: record.wall_s,
    peak_memory: record.peak_memory,
    memory_delta: record.memory_delta,
    memory_start: record.memory_start,
    gpu_peak_memory: record.gpu_peak_memory,
    gpu_devices: record.gpu_devices,
    cpu_s: record.cpu_s,
    cpu_percent: record.cpu_percent,
    exact: [...record.exact],
    ended: new Date(record.end * 1000).toISOString()
  };
}

/** Read a cell's stored cost back; null for anything that is not one (a foreign key). */
export function readCost(value: unknown): ICellCost | null {
  if (!value || typeof value !== 'object') {
    return null;
  }
  const cost = value as Partial<ICellCost>;
  if (typeof cost.wall_s !== 'number' || !isFinite(cost.wall_s)) {
    return null;
  }
  const num = (v: unknown) => (typeof v === 'number' && isFinite(v) ? v : null);
  return {
    wall_s: cost.wall_s,
    peak_memory: num(cost.peak_memory),
    memory_delta: num(cost.memory_delta),
    memory_start: num(cost.memory_start),
    gpu_peak_memory: num(cost.gpu_peak_memory),
    gpu_devices:
      cost.gpu_devices && typeof cost.gpu_devices === 'object' ? cost.gpu_devices : null,
    cpu_s: num(cost.cpu_s),
    cpu_percent: num(cost.cpu_percent),
    exact: Array.isArray(cost.exact) ? cost.exact.filter(e => typeof e === 'string') : [],
    ended: typeof cost.ended === 'string' ? cost.ended : ''
  };
}

/** Cells shorter than this show no CPU share: CPU time is counted in 10 ms ticks. */
export const CPU_SHARE_FROM = 0.5;

/** The line under a cell: "2 min 13 s · peak 3.1 GiB (+1.2 GiB) · GPU 7.2 GiB · CPU 180%". */
export function costLine(cost: ICellCost): string {
  const parts = [formatElapsed(cost.wall_s)];
  if (cost.peak_memory !== null) {
    const change = cost.memory_delta !== null ? ` (${formatChange(cost.memory_delta)})` : '';
    parts.push(`peak ${formatBytes(cost.peak_memory)}${change}`);
  }
  if (cost.gpu_peak_memory) {
    parts.push(`GPU ${formatBytes(cost.gpu_peak_memory)}`);
  }
  if (cost.cpu_percent !== null && cost.wall_s >= CPU_SHARE_FROM) {
    parts.push(`CPU ${formatPercent(cost.cpu_percent)}`);
  }
  return parts.join(' · ');
}

/** The tooltip: every figure, and which are exact and which sampled. */
export function costDetail(cost: ICellCost): string {
  const mark = (key: string) => (cost.exact.includes(key) ? 'exact' : 'sampled');
  const lines = [`time ${formatElapsed(cost.wall_s)} (${mark('wall_s')})`];
  if (cost.cpu_s !== null) {
    lines.push(`CPU ${cost.cpu_s.toFixed(2)} s (${mark('cpu_s')}), ${formatPercent(cost.cpu_percent)} of one core`);
  }
  if (cost.peak_memory !== null) {
    const kind = cost.exact.includes('peak_memory') ? 'exact' : 'sampled or an upper bound';
    lines.push(`peak memory ${formatBytes(cost.peak_memory)} (${kind})`);
  }
  if (cost.memory_start !== null && cost.memory_delta !== null) {
    lines.push(
      `memory ${formatBytes(cost.memory_start)} at the start, ${formatChange(cost.memory_delta)} at the end`
    );
  }
  if (cost.gpu_peak_memory) {
    const devices = Object.entries(cost.gpu_devices ?? {})
      .map(([index, bytes]) => `GPU ${index}: ${formatBytes(bytes)}`)
      .join(', ');
    lines.push(
      `peak GPU memory ${formatBytes(cost.gpu_peak_memory)} (${mark('gpu_peak_memory')}${
        devices ? `; ${devices}` : ''
      })`
    );
  }
  if (cost.ended) {
    lines.push(`ended ${cost.ended}`);
  }
  return lines.join('\n');
}

/**
 * How close the cell came to the limits, as the status bar judges a kernel: its peak against the
 * memory limit (the container's, else the host's), its GPU peak against the GPUs' size.
 */
export function costPressure(cost: ICellCost, snapshot: ISnapshot | null): Pressure {
  const shares: number[] = [];
  const mark = memoryMark(snapshot);
  if (cost.peak_memory !== null && mark) {
    shares.push(cost.peak_memory / mark);
  }
  const gpus = snapshot?.gpus ?? [];
  if (cost.gpu_peak_memory && gpus.length > 0) {
    const devices = Object.entries(cost.gpu_devices ?? {});
    if (devices.length > 0) {
      for (const [index, bytes] of devices) {
        const gpu = gpus.find(g => String(g.index) === index);
        if (gpu?.memory_total) {
          shares.push(bytes / gpu.memory_total);
        }
      }
    } else {
      const total = Math.max(0, ...gpus.map(g => g.memory_total ?? 0));
      if (total) {
        shares.push(cost.gpu_peak_memory / total);
      }
    }
  }
  const worst = Math.max(0, ...shares);
  return worst >= PRESSURE_DANGER ? 'danger' : worst >= PRESSURE_WARN ? 'warn' : 'ok';
}

/** The memory a cell's peak is weighed against: the container's limit, else the host's memory. */
function memoryMark(snapshot: ISnapshot | null): number | null {
  const host = snapshot?.host;
  return host ? (host.memory_limit ?? host.memory_total) : null;
}

/**
 * The limits {@link costPressure} reads from a snapshot, as one string: the memory mark and each
 * GPU's index and size. Equal keys give every cell the same colour; null without a snapshot.
 */
export function pressureLimitsKey(snapshot: ISnapshot | null): string | null {
  if (!snapshot) {
    return null;
  }
  const gpus = (snapshot.gpus ?? [])
    .map(g => `${g.index}:${g.memory_total ?? ''}`)
    .sort()
    .join(',');
  return `${memoryMark(snapshot) ?? ''}|${gpus}`;
}

/** Where the footers' colour comes from: the page's metrics (MetricsModel). */
export interface ILimitsSource {
  readonly snapshot: ISnapshot | null;
  readonly changed: ISignal<unknown, void>;
}

/**
 * Call `redraw` when the limits the colour depends on change (the first snapshot after a
 * reload, a new memory limit, a GPU that appears), never for a snapshot whose limits are the
 * same ones, nor for none (limits unknown: what is drawn stays). Returns the disconnect.
 */
export function watchLimits(source: ILimitsSource, redraw: () => void): () => void {
  let key = pressureLimitsKey(source.snapshot);
  const onChanged = () => {
    const next = pressureLimitsKey(source.snapshot);
    if (next !== null && next !== key) {
      key = next;
      redraw();
    }
  };
  source.changed.connect(onChanged);
  return () => {
    source.changed.disconnect(onChanged);
  };
}

export type CostOrder = 'time' | 'memory';

/** One cell of a notebook with its stored cost. */
export interface IRankedCell {
  /** The cell's id in the notebook model. */
  id: string;
  /** 0-based position in the notebook. */
  index: number;
  /** The first line of its source. */
  label: string;
  cost: ICellCost;
}

/** The cells that have a cost, most expensive first: by time, or by peak memory. */
export function rankCells(cells: IRankedCell[], order: CostOrder): IRankedCell[] {
  const key =
    order === 'time'
      ? (c: IRankedCell) => c.cost.wall_s
      : (c: IRankedCell) => c.cost.peak_memory ?? -1;
  return [...cells].sort((a, b) => key(b) - key(a) || a.index - b.index);
}
