/**
 * The memory guard's interrupts, as a page tells them (pure: no JupyterLab imports).
 *
 * TorchlabExtension.memory_guard interrupts a kernel near its memory limit; the server keeps
 * each interrupt in the snapshot's `memory_guard` list. A page says so where that notebook is
 * open, once per interrupt, so it is said even when the kernel never imported jupyter_torchlab
 * (which otherwise prints the same sentence under the cell).
 */
import type { IMemoryGuardEvent } from './types';

/** The notification's text: the notebook, then the server's sentence. */
export function guardMessage(event: IMemoryGuardEvent): string {
  const name = event.path
    ? event.path.split('/').pop() || event.path
    : `kernel ${event.kernel_id.slice(0, 8)}`;
  return `${name}: ${event.reason}`;
}

/**
 * Return the interrupts this page should tell now, oldest first, and mark them told.
 *
 * `since`: events before it (unix seconds; the page's opening) are old news. `openPaths`: the
 * notebooks open on this page (null where the host application cannot tell: every event is
 * told). An event whose notebook is not open yet stays untold, and is told when it opens.
 */
export function guardNotices(
  events: IMemoryGuardEvent[] | undefined,
  told: Set<string>,
  since: number,
  openPaths: Set<string> | null
): IMemoryGuardEvent[] {
  const now: IMemoryGuardEvent[] = [];
  for (const event of events ?? []) {
    if (told.has(event.id)) {
      continue;
    }
    if (event.time < since) {
      told.add(event.id);
      continue;
    }
    if (openPaths !== null && (event.path === null || !openPaths.has(event.path))) {
      continue;
    }
    told.add(event.id);
    now.push(event);
  }
  return now;
}
