/**
 * When a page tells that a cell's work ended, and how two plugins share that word. Pure: numbers
 * and keys in, decisions out; no DOM, no JupyterLab imports, so jest tests it with plain asserts.
 *
 * Two plugins can tell the end of the same cell execution: run-notify (a run the kernel published
 * ended: "train.ipynb: train finished: 600/600 it in 10 min") and long-cell (a cell that ran past
 * the threshold ended while its notebook was not in view). One execution gets one notification:
 * the run's, which says more. Whichever comes first (the cell's execute_reply and the server's
 * document saying the run ended race), `EndNotices` makes the second one skip, or replace the
 * long-cell notification with the run's. An execution is `<kernel id>:<execute request msg_id>`,
 * the key runs.ts's executionKey gives a run.
 */

export type NoticeAction =
  /** Post the notification. */
  | { kind: 'post' }
  /** Put the run's message in the place of the long-cell notification `id` (one notification). */
  | { kind: 'replace'; id: string }
  /** The execution was told already. */
  | { kind: 'skip' };

/** The notifications told per cell execution on this page (the latest `limit` executions). */
export class EndNotices {
  constructor(limit = 500) {
    this._limit = limit;
  }

  /** A run of `execution` ended: post its notification, or replace the long cell's one. */
  runEnded(execution: string | null): NoticeAction {
    const told = execution === null ? undefined : this._told.get(execution);
    if (told?.by === 'cell') {
      return { kind: 'replace', id: told.id };
    }
    return told ? { kind: 'skip' } : { kind: 'post' };
  }

  /** A long cell ended: post its notification unless the execution was told already. */
  cellEnded(execution: string | null): NoticeAction {
    return execution !== null && this._told.has(execution) ? { kind: 'skip' } : { kind: 'post' };
  }

  /** A notification `id` was posted by run-notify ('run') or long-cell ('cell'). */
  told(execution: string | null, by: 'run' | 'cell', id: string): void {
    if (execution === null) {
      return;
    }
    this._told.delete(execution);
    this._told.set(execution, { by, id });
    while (this._told.size > this._limit) {
      this._told.delete(this._told.keys().next().value as string);
    }
  }

  private _limit: number;
  private _told = new Map<string, { by: 'run' | 'cell'; id: string }>();
}

/** The one registry of a page: both plugins share it. */
export const endNotices = new EndNotices();

/** What long-cell knows when a cell's execution ends. */
export interface ICellEnd {
  /** ms: when the cell was queued on this page (undefined: this page did not run it). */
  queuedAt: number | undefined;
  /** ms: when the previous cell of its notebook finished (0: none). */
  previousDone: number;
  now: number;
  isCode: boolean;
  /** The setting longCellNotification. */
  enabled: boolean;
  /** The setting longCellSeconds. */
  thresholdSeconds: number;
  /** The user is looking at the notebook. */
  inView: boolean;
}

/**
 * How long the cell ran, in seconds, when long-cell tells its end; null when it does not: not a
 * code cell this page ran, the setting off, shorter than the threshold, or the user is looking.
 * A cell's time runs from when it was queued or the previous cell finished, whichever is later,
 * so "Run all" times each cell, not the queue.
 */
export function longCellDue(end: ICellEnd): number | null {
  if (end.queuedAt === undefined || !end.isCode || !end.enabled) {
    return null;
  }
  const seconds = (end.now - Math.max(end.queuedAt, end.previousDone)) / 1000;
  return seconds < end.thresholdSeconds || end.inView ? null : seconds;
}

/** The execution a cell's request is, for EndNotices: null without a kernel or a msg_id. */
export function cellExecution(kernelId: string | null, msgId: string | null): string | null {
  return kernelId && msgId ? `${kernelId}:${msgId}` : null;
}

/**
 * What the pages of one server remember between loads, so that a run that ended while no page
 * was open is told once when one opens (runs.ts's RunWatch): the server time of the latest
 * document a page saw, and the runs already told (by any page, on any load).
 */
export interface IRunsSeen {
  /** Server seconds of the latest document a page saw; null: no page of this browser ever did. */
  lastLooked(): number | null;
  /** A page saw the document of server time `time`. */
  looked(time: number): void;
  /** Whether the run (runs.ts's runKey) was told already. */
  wasTold(key: string): boolean;
  /** These runs were told (or the user saw them end). */
  told(keys: string[]): void;
}

/** The part of the browser's Storage that RunsSeenStore uses. */
export interface IKeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

interface IRunsSeenState {
  looked: number | null;
  told: string[];
}

/**
 * IRunsSeen in localStorage, one entry per server (its base URL: JupyterHub serves many servers
 * from one origin). Read and written whole at each change, so pages of the same server open at
 * once add to each other's memory instead of overwriting it; the latest `limit` runs told are
 * kept. `looked` writes at most every `lookedEvery` seconds of server time (the stream sends a
 * document each tick). A store that fails (blocked, full) makes it forget: nothing breaks.
 */
export class RunsSeenStore implements IRunsSeen {
  constructor(
    private readonly _store: IKeyValueStore | null,
    baseUrl: string,
    private readonly _limit = 500,
    private readonly _lookedEvery = 5
  ) {
    this._key = `jupyter-torchlab:runs-seen:${baseUrl}`;
  }

  lastLooked(): number | null {
    return this._read().looked;
  }

  looked(time: number): void {
    if (this._written !== null && time - this._written < this._lookedEvery) {
      return;
    }
    const state = this._read();
    state.looked = Math.max(state.looked ?? time, time);
    this._write(state);
    this._written = time;
  }

  wasTold(key: string): boolean {
    return this._read().told.includes(key);
  }

  told(keys: string[]): void {
    if (keys.length === 0) {
      return;
    }
    const state = this._read();
    state.told = [...state.told.filter(k => !keys.includes(k)), ...keys].slice(-this._limit);
    this._write(state);
  }

  private _read(): IRunsSeenState {
    try {
      const found = JSON.parse(this._store?.getItem(this._key) ?? 'null');
      return {
        looked: typeof found?.looked === 'number' ? found.looked : null,
        told: Array.isArray(found?.told)
          ? found.told.filter((k: unknown) => typeof k === 'string')
          : []
      };
    } catch {
      return { looked: null, told: [] };
    }
  }

  private _write(state: IRunsSeenState): void {
    try {
      this._store?.setItem(this._key, JSON.stringify(state));
    } catch {
      // storage full or blocked: the next load may tell a run again, or not at all
    }
  }

  private readonly _key: string;
  private _written: number | null = null;
}
