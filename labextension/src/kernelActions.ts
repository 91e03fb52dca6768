import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { KernelAPI } from '@jupyterlab/services';

import { basename, formatBytes, formatClock, formatSpan } from './format';
import type { ITorchlab } from './tokens';
import type { IKernel } from './types';

/** What a user can do to a kernel from the panel or a notification. */
export interface IKernelActions {
  interrupt(kernel: IKernel): Promise<void>;
  /** Asks first. */
  shutdown(kernel: IKernel): Promise<void>;
  open(kernel: IKernel): void;
  /** For a kernel idle on GPU memory: offers to shut it down or interrupt it. */
  free(kernel: IKernel): Promise<void>;
}

export function kernelLabel(kernel: { path: string | null; id?: string; kernel_id?: string }): string {
  const id = kernel.id ?? kernel.kernel_id ?? '';
  return kernel.path ? basename(kernel.path) : `kernel ${id.slice(0, 8)}`;
}

/** One sentence on a kernel idle on GPU memory: how long, how much, and any shutdown ahead. */
export function idleHolderText(kernel: IKernel, now: number): string {
  const holding = kernel.holding_idle;
  if (!holding) {
    return '';
  }
  const cull =
    holding.cull_at !== undefined
      ? ` It will be shut down in ${formatSpan(Math.max(0, holding.cull_at - now))} (at ${formatClock(
          holding.cull_at
        )}) unless it runs something.`
      : '';
  return `Idle for ${formatSpan(holding.seconds)} holding ${formatBytes(
    holding.bytes
  )} of GPU memory that nobody else can use.${cull}`;
}

export function makeKernelActions(app: JupyterFrontEnd, torchlab: ITorchlab): IKernelActions {
  const interrupt = async (kernel: IKernel) => {
    try {
      await KernelAPI.interruptKernel(kernel.id, torchlab.serverSettings);
      Notification.info(`Interrupted ${kernelLabel(kernel)}`, { autoClose: 3000 });
    } catch (error) {
      await showErrorMessage('Could not interrupt the kernel', error as Error);
    }
  };
  const shutdownNow = async (kernel: IKernel) => {
    try {
      // Through the kernel manager, so open notebooks learn that their kernel is gone.
      await app.serviceManager.kernels.shutdown(kernel.id);
    } catch (error) {
      await showErrorMessage('Could not shut down the kernel', error as Error);
    }
  };
  return {
    interrupt,
    shutdown: async (kernel: IKernel) => {
      const result = await showDialog({
        title: 'Shut down kernel?',
        body: `Shut down the kernel of ${kernelLabel(kernel)}? Its variables are lost.`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Shut down' })]
      });
      if (result.button.accept) {
        await shutdownNow(kernel);
      }
    },
    open: (kernel: IKernel) => {
      if (kernel.path) {
        void app.commands.execute('docmanager:open', { path: kernel.path });
      }
    },
    free: async (kernel: IKernel) => {
      const now = (torchlab.model.snapshot?.time ?? Date.now() / 1000);
      const result = await showDialog({
        title: `Free the GPU memory of ${kernelLabel(kernel)}?`,
        body:
          `${idleHolderText(kernel, now)} Shutting the kernel down frees it (its variables are ` +
          'lost; the notebook itself is kept). Interrupting keeps the kernel and stops anything ' +
          'still running in it; the memory stays held until the notebook frees it, for ' +
          'example with `del model` and `torch.cuda.empty_cache()`.',
        buttons: [
          Dialog.cancelButton(),
          Dialog.okButton({ label: 'Interrupt', displayType: 'default' }),
          Dialog.warnButton({ label: 'Shut down' })
        ]
      });
      if (result.button.label === 'Shut down') {
        await shutdownNow(kernel);
      } else if (result.button.label === 'Interrupt') {
        await interrupt(kernel);
      }
    }
  };
}
