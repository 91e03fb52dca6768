/**
 * The panel's runs across notebooks: each published run (tl.progress, tqdm drop-in bars,
 * tl.fit) with its notebook, how far it is, its rate, time left, latest metrics and state.
 * Clicking one opens its notebook at its cell.
 */

import React from 'react';

import { basename, formatMetrics, formatPercent } from './format';
import { allRuns, runFigures, runKey, runLabel, runPercent } from './runs';
import type { IRun, ISnapshot } from './types';

export function RunList(props: {
  snapshot: ISnapshot;
  openRun: (run: IRun) => void;
}): JSX.Element | null {
  const runs = allRuns(props.snapshot);
  if (runs.length === 0) {
    return null;
  }
  return (
    <section className="jp-torchlab-section jp-torchlab-runs">
      <h3>Runs</h3>
      <div role="list">
        {runs.map(run => (
          <RunRow key={runKey(run)} run={run} openRun={props.openRun} />
        ))}
      </div>
    </section>
  );
}

function RunRow(props: { run: IRun; openRun: (run: IRun) => void }): JSX.Element {
  const { run } = props;
  const percent = runPercent(run);
  const metrics = formatMetrics(run.metrics);
  const open = () => props.openRun(run);
  return (
    <div
      className="jp-torchlab-run-row"
      role="listitem"
      data-run-id={run.id}
      data-kernel-id={run.kernel_id}
      data-state={run.state}
      data-path={run.path ?? undefined}
      title={run.path ? `Open ${run.path} at its cell` : undefined}
      onClick={run.path ? open : undefined}
    >
      <div className="jp-torchlab-run-head">
        <span className="jp-torchlab-run-desc">{runLabel(run)}</span>
        <span className="jp-torchlab-run-path">
          {run.path ? basename(run.path) : 'no notebook'}
        </span>
        <span className={`jp-torchlab-state jp-torchlab-run-state-${run.state}`}>
          {run.state === 'running' && percent !== null
            ? formatPercent(Math.floor(percent))
            : run.state}
        </span>
      </div>
      {percent !== null && (
        <div className="jp-torchlab-run-bar" aria-hidden="true">
          <div style={{ width: `${percent}%` }} />
        </div>
      )}
      <div className="jp-torchlab-run-figures">{runFigures(run)}</div>
      {metrics && <div className="jp-torchlab-run-metrics">{metrics}</div>}
      {run.state === 'failed' && run.error && (
        <div className="jp-torchlab-run-error">{run.error}</div>
      )}
    </div>
  );
}
