/**
 * The panel's small charts: a sparkline of a bounded series, and a meter (a label, a value and
 * its sparkline). Views only: the numbers come formatted from format.ts.
 */

import React from 'react';

import { sparklinePoints } from './format';

const CHART_WIDTH = 120;
const CHART_HEIGHT = 28;

export function Sparkline(props: {
  values: ReadonlyArray<number | null>;
  capacity: number;
  label: string;
}): JSX.Element {
  const points = sparklinePoints(props.values, CHART_WIDTH, CHART_HEIGHT, 100, props.capacity);
  return (
    <svg
      className="jp-torchlab-spark"
      // A pixel of margin so lines at 0% and 100% are not cut in half by the edge.
      viewBox={`0 -1 ${CHART_WIDTH} ${CHART_HEIGHT + 2}`}
      preserveAspectRatio="none"
      role="img"
      aria-label={props.label}
    >
      <polyline points={points} />
    </svg>
  );
}

export function Meter(props: {
  label: string;
  value: string;
  detail?: string;
  title?: string;
  series: ReadonlyArray<number | null>;
  capacity: number;
}): JSX.Element {
  return (
    <div className="jp-torchlab-meter" title={props.title}>
      <div className="jp-torchlab-meter-text">
        <span className="jp-torchlab-meter-label">{props.label}</span>
        <span className="jp-torchlab-meter-value">{props.value}</span>
        {props.detail && <span className="jp-torchlab-meter-detail">{props.detail}</span>}
      </div>
      <Sparkline
        values={props.series}
        capacity={props.capacity}
        label={`${props.label} history`}
      />
    </div>
  );
}
