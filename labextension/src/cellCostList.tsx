import React, { useState } from 'react';

import { costLine, CostOrder, IRankedCell, rankCells } from './cellCost';

/** "Cells by cost": the current notebook's measured cells, most expensive first; a click goes to
 * the cell. */
export function CellCostList(props: {
  cells: IRankedCell[];
  showCell: (id: string) => void;
}): JSX.Element | null {
  const [order, setOrder] = useState<CostOrder>('time');
  if (props.cells.length === 0) {
    return null;
  }
  const ranked = rankCells(props.cells, order);
  return (
    <section className="jp-torchlab-section jp-torchlab-cellcosts">
      <h3>
        Cells by cost{' '}
        <select
          className="jp-torchlab-cellcosts-order"
          value={order}
          onChange={event => setOrder(event.target.value as CostOrder)}
          aria-label="Sort cells by"
        >
          <option value="time">time</option>
          <option value="memory">peak memory</option>
        </select>
      </h3>
      <ol>
        {ranked.slice(0, 20).map(cell => (
          <li key={cell.id}>
            <button
              className="jp-torchlab-cellcost-row"
              data-cell-id={cell.id}
              title={`Go to cell ${cell.index + 1}`}
              onClick={() => props.showCell(cell.id)}
            >
              <span className="jp-torchlab-cellcost-label">
                [{cell.index + 1}] {cell.label || '(empty)'}
              </span>
              <span className="jp-torchlab-cellcost-figures">{costLine(cell.cost)}</span>
            </button>
          </li>
        ))}
      </ol>
    </section>
  );
}
