import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';

import { formatBytes, formatSpan, stretchEnded } from '../format';
import { idleHolderText, kernelLabel, makeKernelActions } from '../kernelActions';
import { CommandIDs, ITorchlab } from '../tokens';
import type { IGpuAction } from '../types';

/**
 * Who holds a GPU while idle: one notification per idle stretch of a kernel that sits on GPU
 * memory past TorchlabExtension.gpu_idle_warn, with "Free it"; it is updated when the opt-in
 * gpu_idle_cull schedules a shutdown, and a shutdown it made is reported once. A notebook
 * closed in the UI keeps its kernel, so this listens while any kernel runs, not only while a
 * notebook is open.
 */
export const gpuIdlePlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-torchlab:gpu-idle',
  description: 'A notification for kernels that sit idle on GPU memory, with "Free it".',
  autoStart: true,
  requires: [ITorchlab],
  activate: (app: JupyterFrontEnd, torchlab: ITorchlab) => {
    const { model } = torchlab;
    const actions = makeKernelActions(app, torchlab);
    // idle stretch (kernel id and idle_since) -> [notification id, whether it names a shutdown]
    const shown = new Map<string, [string, boolean]>();
    const reported = new Set<string>();
    const since = Date.now() / 1000 - 5; // shutdowns from before this page opened are old news

    model.changed.connect(() => {
      const snapshot = model.snapshot;
      if (!snapshot) {
        return;
      }
      const current = new Set<string>();
      for (const kernel of snapshot.kernels) {
        if (!kernel.holding_idle) {
          continue;
        }
        const key = `${kernel.id}:${kernel.idle_since}`;
        current.add(key);
        const culling = kernel.holding_idle.cull_at !== undefined;
        const before = shown.get(key);
        if (before && (before[1] || !culling)) {
          continue;
        }
        const message = `${kernelLabel(kernel)}: ${idleHolderText(kernel, snapshot.time)}`;
        const options = {
          autoClose: false as const,
          actions: [
            { label: 'Free it', callback: () => void actions.free(kernel) },
            {
              label: 'Open the monitor',
              callback: () => void app.commands.execute(CommandIDs.openMonitor)
            }
          ]
        };
        if (before) {
          Notification.update({ id: before[0], message, type: 'warning', ...options });
          shown.set(key, [before[0], culling]);
        } else {
          shown.set(key, [Notification.warning(message, options), culling]);
        }
      }
      for (const [key, [id]] of Array.from(shown)) {
        if (!current.has(key) && stretchEnded(key, snapshot.kernels)) {
          Notification.dismiss(id); // used again, freed, or gone: the warning is stale
          shown.delete(key);
        }
      }
      for (const action of snapshot.gpu_actions ?? []) {
        const key = `${action.kernel_id}:${action.time}`;
        if (action.action !== 'culled' || reported.has(key) || action.time < since) {
          continue;
        }
        reported.add(key);
        Notification.warning(cullMessage(action), { autoClose: false });
      }
    });
    const kernels = app.serviceManager.kernels;
    const update = () =>
      model.setNeeded('gpu-idle', Array.from(kernels.running()).length > 0);
    kernels.runningChanged.connect(update);
    update();
  }
};

function cullMessage(action: IGpuAction): string {
  return (
    `Shut down the kernel of ${kernelLabel(action)}: it had been idle for ${formatSpan(
      action.seconds
    )} holding ${formatBytes(action.bytes)} of GPU memory (TorchlabExtension.gpu_idle_cull). ` +
    'The notebook is kept; running a cell starts a new kernel.'
  );
}
