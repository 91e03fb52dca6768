/**
 * The runs kernels publish (tl.progress, tqdm drop-in bars, tl.fit), as the page reads them from
 * the server's documents. Pure: documents in, lists, decisions and text out; no DOM, no
 * JupyterLab imports, so jest tests it with plain asserts.
 *
 * A run is keyed by (kernel_id, id). A cell's execution is (kernel_id, msg_id): nested bars of
 * one loop share it.
 */

import {
  basename,
  formatEta,
  formatMetrics,
  formatPercent,
  formatRate,
  formatSpan
} from './format';
import type { IRunsSeen } from './endNotices';
import type { IRun, ISnapshot } from './types';

export function runKey(run: IRun): string {
  return `${run.kernel_id}:${run.id}`;
}

/** The cell execution a run belongs to (runs without a msg_id stand alone). */
export function executionKey(run: IRun): string {
  return `${run.kernel_id}:${run.msg_id ?? `run ${run.id}`}`;
}

/** A run's name for people: its description, else what it is ("fit", "progress"). */
export function runLabel(run: IRun): string {
  return run.desc.trim() || run.kind;
}

/** How far the run is, 0-100 (a fit: of all its epochs), or null without a total. */
export function runPercent(run: IRun): number | null {
  if (run.fraction !== null && run.fraction !== undefined && isFinite(run.fraction)) {
    return Math.min(100, Math.max(0, 100 * run.fraction));
  }
  return run.total ? Math.min(100, (100 * run.n) / run.total) : null;
}

/**
 * Every run of a document across kernels: running first (the longest running first, so an outer
 * loop comes before the bars nested in it), then ended ones, the most recently ended first.
 */
export function allRuns(snapshot: ISnapshot | null): IRun[] {
  const runs = (snapshot?.kernels ?? []).flatMap(k => k.runs ?? []);
  const running = runs.filter(r => r.state === 'running');
  const ended = runs.filter(r => r.state !== 'running');
  running.sort((a, b) => a.started - b.started || a.id.localeCompare(b.id));
  ended.sort((a, b) => (b.ended ?? b.updated) - (a.ended ?? a.updated));
  return [...running, ...ended];
}

/** The run a notebook's kernel is busy with, for a one-line summary: its outermost running bar. */
export function currentRun(runs: IRun[] | null | undefined): IRun | null {
  const running = (runs ?? []).filter(r => r.state === 'running');
  running.sort((a, b) => a.started - b.started);
  return running[0] ?? null;
}

/**
 * The status bar's words for a run: "train 45% · ETA 12 min"; without a total, the count and
 * rate ("train 1200 it · 12.35it/s"); fit adds its epoch ("fit 45% · epoch 3/10 · ETA 12 min").
 */
export function runStatusText(run: IRun): string {
  const percent = runPercent(run);
  const label = runLabel(run);
  const parts = [
    percent === null
      ? `${label} ${run.n} ${run.unit}`
      : `${label} ${formatPercent(Math.floor(percent))}`
  ];
  if (run.epochs) {
    parts.push(`epoch ${run.epoch ?? '?'}/${run.epochs}`);
  }
  if (run.state !== 'running') {
    parts.push(run.state);
  } else if (percent !== null && run.eta !== null) {
    parts.push(`ETA ${formatEta(run.eta)}`);
  } else if (percent === null) {
    parts.push(formatRate(run.rate, run.unit));
  }
  return parts.join(' · ');
}

/** The panel's figures for a run: "45/100 batch · 8.91batch/s · ETA 12 min · 1 min 05 s". */
export function runFigures(run: IRun): string {
  const parts = [run.total ? `${run.n}/${run.total} ${run.unit}` : `${run.n} ${run.unit}`];
  if (run.epochs) {
    parts.push(`epoch ${run.epoch ?? '?'}/${run.epochs}`);
  }
  if (run.state === 'running') {
    parts.push(formatRate(run.rate, run.unit));
    if (run.total && run.eta !== null) {
      parts.push(`ETA ${formatEta(run.eta)}`);
    }
  }
  parts.push(formatSpan(run.elapsed));
  return parts.join(' · ');
}

/** A notification's sentence on a run that ended. */
export function runEndMessage(run: IRun): string {
  const where = run.path ? `${basename(run.path)}: ` : '';
  const label = runLabel(run);
  const progress = run.total ? `${run.n}/${run.total} ${run.unit}` : `${run.n} ${run.unit}`;
  const time = formatSpan(run.elapsed);
  const metrics = formatMetrics(run.metrics, ', ');
  const tail = metrics ? ` (${metrics})` : '';
  switch (run.state) {
    case 'finished':
      return `${where}${label} finished: ${progress} in ${time}${tail}.`;
    case 'failed':
      return `${where}${label} failed at ${progress} after ${time}${
        run.error ? `: ${run.error}` : ''
      }`;
    case 'interrupted':
      return `${where}${label} was interrupted at ${progress} after ${time}${tail}.`;
    default:
      return `${where}${label}: ${runStatusText(run)}`;
  }
}

/**
 * How far before the time a page last looked a run's end still counts as possibly missed, s: the
 * server reads a kernel's file on its tick, so a run can end a little before the document that
 * first shows it ended; runs told are remembered, so this only widens what is checked.
 */
export const MISSED_SLACK = 60;

/**
 * Watches the documents for runs that end. A run that was running in one document and is not
 * running in a later one ended; the page says so once per cell execution (a loop with nested bars
 * ends once: its outermost bar, once no bar of that cell runs any more), and never twice for a
 * run.
 *
 * Runs the first document shows already ended were missed: they ended while no page looked. With
 * `seen` (what the pages of this server remember between loads), those that ended after a page
 * last looked (less MISSED_SLACK) and that no page told are told too, once, and `missed` says
 * which; the others are old news. Without `seen`, or before any page of this browser looked at
 * this server, every run first seen ended is old news (no flood of a day's runs).
 */
export class RunWatch {
  constructor(private readonly _seen: IRunsSeen | null = null) {}

  /** The runs that ended since the last document, one per cell execution, to notify. */
  update(snapshot: ISnapshot): IRun[] {
    const runs = (snapshot.kernels ?? []).flatMap(k => k.runs ?? []);
    const liveKernels = new Set(snapshot.kernels.map(k => k.id));
    const first = !this._looked;
    const since = first ? (this._seen?.lastLooked() ?? null) : null;
    this._looked = true;
    const ended: IRun[] = [];
    const nowRunning = new Set<string>();
    const busyExecutions = new Set<string>();
    for (const run of runs) {
      const key = runKey(run);
      if (run.state === 'running') {
        nowRunning.add(key);
        busyExecutions.add(executionKey(run));
      } else if (this._running.has(key) && !this._told.has(key)) {
        ended.push(run);
      } else if (
        since !== null &&
        run.ended !== null &&
        run.ended > since - MISSED_SLACK &&
        !this._seen?.wasTold(key)
      ) {
        ended.push(run);
        this._missed.add(key);
      }
    }
    // a run that was running and is gone with its kernel: the death is told by the deaths plugin
    for (const key of this._running) {
      const kernelId = key.slice(0, key.indexOf(':'));
      if (!liveKernels.has(kernelId)) {
        this._told.add(key);
      }
    }
    this._running = nowRunning;
    const byExecution = new Map<string, IRun[]>();
    for (const run of ended) {
      this._told.add(runKey(run));
      const execution = executionKey(run);
      if (!busyExecutions.has(execution)) {
        byExecution.set(execution, [...(byExecution.get(execution) ?? []), run]);
      }
    }
    this._seen?.told(ended.map(runKey));
    this._seen?.looked(snapshot.time);
    return Array.from(byExecution.values(), group =>
      group.reduce((outer, run) => (run.started < outer.started ? run : outer))
    );
  }

  /** Whether `run`, given by update, ended while no page of this server looked. */
  missed(run: IRun): boolean {
    return this._missed.has(runKey(run));
  }

  private _looked = false;
  private _running = new Set<string>();
  private _told = new Set<string>();
  private _missed = new Set<string>();
}

/**
 * Which runs a page draws under a notebook cell, from the server's stream, or null to draw none.
 *
 * `runs` are the cell's runs (same kernel, same cell_id). Only its latest execution counts.
 * `ownMsgId` is the msg_id of the execute request this page sent for the cell (its output area's
 * future), or null: where the page sent it, its own output (the live widget) shows the run, and
 * drawing would show it twice. Otherwise the output of that execution never reaches this page
 * (it reloaded, or another page ran the cell), and the page draws it while it runs; once drawn,
 * it stays, showing the final record, until the cell runs again (`drawn`).
 */
export function restoreDecision(
  runs: IRun[],
  ownMsgId: string | null,
  drawn: boolean
): IRun[] | null {
  if (runs.length === 0) {
    return null;
  }
  const latest = runs.reduce((a, b) => (b.started > a.started ? b : a));
  const execution = executionKey(latest);
  if (latest.msg_id !== null && latest.msg_id === ownMsgId) {
    return null;
  }
  const shown = runs
    .filter(r => executionKey(r) === execution)
    .sort((a, b) => a.started - b.started || a.id.localeCompare(b.id));
  if (!drawn && !shown.some(r => r.state === 'running')) {
    return null;
  }
  return shown;
}

/** Group runs that name a cell by (kernel, cell id). */
export function runsByCell(runs: IRun[]): Map<string, IRun[]> {
  const cells = new Map<string, IRun[]>();
  for (const run of runs) {
    if (run.cell_id) {
      const key = run.cell_id;
      cells.set(key, [...(cells.get(key) ?? []), run]);
    }
  }
  return cells;
}

/** The mime type of an ipywidgets view in a cell's output. */
export const WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json';

/** A widget-view output of a cell a run is drawn for, as the page finds it. */
export interface IWidgetOutput {
  /** The widget renderer drew a view (its model was available); else it shows ipywidgets'
   * "Loading widget..." or "Error displaying widget: model not found". */
  rendered: boolean;
  /** This page hid it while it drew the run. */
  hidden: boolean;
}

/**
 * What a cell whose run the page draws does with its widget-view outputs (`outputs`, in order).
 *
 * A saved notebook keeps the run's widget view, which cannot render while the kernel is busy in
 * the cell (the widget manager cannot restore models then): ipywidgets leaves "Loading widget..."
 * above the drawn run. So while the run is drawn, each view that did not render is hidden (`hide`)
 * and each hidden one that renders is shown again (`show`); views that rendered from the start
 * are left alone. Once every hidden view has rendered (the cell ended and the manager restored
 * their models), the real widgets show the run and the drawn display goes (`widgetWins`). A view
 * that never renders (its model was closed, as tl.progress closes its bar at the end) stays hidden
 * and the drawn final record stays in its place: one display either way.
 */
export function placeholderPlan(outputs: IWidgetOutput[]): {
  hide: number[];
  show: number[];
  widgetWins: boolean;
} {
  const hidden = outputs.filter(o => o.hidden);
  if (hidden.length > 0 && hidden.every(o => o.rendered)) {
    return { hide: [], show: outputs.flatMap((o, i) => (o.hidden ? [i] : [])), widgetWins: true };
  }
  return {
    hide: outputs.flatMap((o, i) => (!o.rendered && !o.hidden ? [i] : [])),
    show: outputs.flatMap((o, i) => (o.rendered && o.hidden ? [i] : [])),
    widgetWins: false
  };
}
