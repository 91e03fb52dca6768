import { gpuKey, SnapshotSeries } from '../src/series';
import { gpu, kernel, snapshot } from './fixtures';

describe('SnapshotSeries host', () => {
  it('keeps the last N host readings for the charts', () => {
    const series = new SnapshotSeries(3);
    expect(series.isEmpty).toBe(true);
    for (let i = 0; i < 5; i++) {
      const s = snapshot(i);
      s.host!.cpu_percent = i * 10;
      series.record(s);
    }
    expect(series.host.cpu).toEqual([20, 30, 40]);
    expect(series.host.memory).toEqual([50, 50, 50]);
    expect(series.isEmpty).toBe(false);
  });

  it('reads memory against the limit where there is one, and an unknown CPU as 0', () => {
    const series = new SnapshotSeries(3);
    const s = snapshot(1);
    s.host!.memory_limit = 2000;
    s.host!.cpu_percent = null;
    series.record(s);
    s.host = null;
    series.record(s); // no host reading: the host charts do not move
    expect(series.host).toEqual({ cpu: [0], memory: [25] });
  });
});

describe('SnapshotSeries GPUs', () => {
  it('tracks each GPU by uuid and forgets GPUs that disappear', () => {
    const series = new SnapshotSeries(3);
    const one = gpu(0, { uuid: 'GPU-1', utilization_gpu: 80, memory_used: 250 });
    const s = snapshot(1);
    s.gpus = [one];
    series.record(s);
    expect(series.gpu(one)).toEqual({ utilization: [80], memory: [25] });
    series.record(snapshot(2));
    expect(series.gpu(one)).toEqual({ utilization: [], memory: [] });
  });

  it('keeps null where a GPU could not be read, and keys a GPU without uuid by index', () => {
    const series = new SnapshotSeries(3);
    const bare = gpu(3, { uuid: null, utilization_gpu: null, memory_used: null });
    const s = snapshot(1);
    s.gpus = [bare];
    series.record(s);
    expect(gpuKey(bare)).toBe('index-3');
    expect(series.gpu(bare)).toEqual({ utilization: [null], memory: [null] });
  });
});

describe('SnapshotSeries kernels', () => {
  it("keeps each GPU kernel's share and memory over time, against its own GPUs", () => {
    const series = new SnapshotSeries(3);
    const send = (time: number, kernels = [kernel()]) => {
      const s = snapshot(time, kernels);
      s.gpus = [gpu(0), gpu(1), gpu(2)];
      series.record(s);
    };
    const cpuOnly = kernel({ id: 'cpu', gpu_memory: 0, gpu_devices: [] });
    send(1, [kernel({ id: 'k', gpu_memory: null }), cpuOnly]);
    expect(series.kernel('k')).toEqual({ utilization: [], memory: [] });
    expect(series.kernel('cpu')).toEqual({ utilization: [], memory: [] });
    // 500 of the 2000 bytes of GPUs 0 and 2
    send(2, [kernel({ id: 'k', gpu_memory: 500, gpu_devices: [0, 2], gpu_utilization: 30 })]);
    send(3, [kernel({ id: 'k', gpu_memory: 1000, gpu_devices: [0, 2], gpu_utilization: null })]);
    expect(series.kernel('k')).toEqual({ utilization: [30, null], memory: [25, 50] });
    send(4, []); // the kernel is gone
    expect(series.kernel('k')).toEqual({ utilization: [], memory: [] });
  });

  it('reads a kernel that let go of its GPU memory as 0, and unknown memory as null', () => {
    const series = new SnapshotSeries(3);
    const send = (gpuMemory: number | null) => {
      const s = snapshot(1, [kernel({ id: 'k', gpu_memory: gpuMemory, gpu_devices: [0] })]);
      s.gpus = [gpu(0)];
      series.record(s);
    };
    send(250);
    send(0);
    send(null);
    expect(series.kernel('k').memory).toEqual([25, 0, null]);
  });
});
