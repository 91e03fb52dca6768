import { LabIcon } from '@jupyterlab/ui-components';

import torchlabSvg from '../style/icons/torchlab.svg';

/** The extension's own icon: launcher tile, side panel tab and status bar item. */
export const torchlabIcon = new LabIcon({ name: 'jupyter-torchlab:icon', svgstr: torchlabSvg });
