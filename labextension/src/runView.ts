/**
 * The display a page draws under a notebook cell whose run's own output cannot reach it (the
 * page reloaded, or another page ran the cell): tqdm's line for each bar of the run, its latest
 * metrics and, once it ended, how. Drawn from the server's stream; plain DOM owned by us, placed
 * after the cell's output area and removed when the cell runs again.
 */

import { formatMetrics } from './format';
import { runLabel } from './runs';
import type { IRun } from './types';

export const RUN_VIEW_CLASS = 'jp-torchlab-run-view';

const END_WORDS: { [state: string]: string } = {
  finished: 'finished',
  failed: 'failed',
  interrupted: 'interrupted'
};

export class RunView {
  constructor() {
    this.node = document.createElement('div');
    this.node.className = RUN_VIEW_CLASS;
    this._note = document.createElement('div');
    this._note.className = 'jp-torchlab-run-view-note';
    this._bars = document.createElement('div');
    this.node.append(this._note, this._bars);
  }

  readonly node: HTMLDivElement;

  /** Draw these runs (one cell execution, outer bar first). */
  render(runs: IRun[]): void {
    const running = runs.some(r => r.state === 'running');
    const outer = runs[0];
    this.node.dataset.state = running ? 'running' : outer?.state ?? 'running';
    this._note.textContent = running
      ? 'Running in the kernel: this page shows it from the server, as the cell’s own output ' +
        'does not reach a page that did not run it.'
      : `The run ${END_WORDS[outer?.state] ?? 'ended'} while this page showed it from the server.`;
    this._bars.replaceChildren(...runs.map(run => bar(run)));
  }

  /** Take the view out of the page. */
  remove(): void {
    this.node.remove();
  }

  private _note: HTMLDivElement;
  private _bars: HTMLDivElement;
}

function bar(run: IRun): HTMLElement {
  const block = document.createElement('div');
  block.className = 'jp-torchlab-run-view-bar';
  block.dataset.runId = run.id;
  block.dataset.state = run.state;
  block.dataset.n = String(run.n);
  const line = document.createElement('pre');
  line.className = 'jp-torchlab-run-view-line';
  line.textContent = run.line || `${runLabel(run)}: ${run.n}${run.total ? `/${run.total}` : ''}`;
  block.append(line);
  const metrics = formatMetrics(run.metrics);
  const epoch = run.epochs ? `epoch ${run.epoch ?? '?'}/${run.epochs}` : '';
  const details = [epoch, metrics].filter(Boolean).join(' · ');
  if (details) {
    const figures = document.createElement('div');
    figures.className = 'jp-torchlab-run-view-metrics';
    figures.textContent = details;
    block.append(figures);
  }
  if (run.state !== 'running') {
    const end = document.createElement('div');
    end.className = `jp-torchlab-run-view-end jp-torchlab-run-view-${run.state}`;
    end.textContent =
      run.state === 'failed'
        ? `${runLabel(run)} failed${run.error ? `: ${run.error}` : ''}`
        : `${runLabel(run)} ${END_WORDS[run.state] ?? run.state}`;
    block.append(end);
  }
  return block;
}
