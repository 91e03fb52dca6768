/**
 * The JSON the server extension sends on `GET torchlab/api/metrics` and on each
 * `torchlab/api/stream` message. Any numeric reading may be null: not readable here.
 */

export interface IHost {
  /** Percent of the CPUs this server may use (cgroup limit aware), 0-100. */
  cpu_percent: number | null;
  cpu_count: number | null;
  cpu_limit: number | null;
  per_cpu: number[];
  load_avg: [number, number, number] | number[];
  memory_total: number | null;
  memory_used: number | null;
  memory_available: number | null;
  memory_limit: number | null;
  swap_total: number | null;
  swap_used: number | null;
}

export interface IGpu {
  index: number;
  name: string | null;
  uuid: string | null;
  utilization_gpu: number | null;
  utilization_memory: number | null;
  memory_used: number | null;
  memory_total: number | null;
  temperature: number | null;
  power_watts: number | null;
  power_limit_watts: number | null;
  source: string | null;
}

export interface IKernel {
  id: string;
  name: string;
  execution_state: string;
  /** ISO 8601 */
  last_activity: string | null;
  /** Unix seconds when the kernel last went busy; null while idle. */
  busy_since: number | null;
  connections?: number;
  pid: number | null;
  /** 100 = one full core, summed over the kernel's process tree. */
  cpu_percent: number | null;
  /** Bytes: PSS when known, else RSS. */
  memory: number | null;
  gpu_memory: number | null;
  /**
   * Percent of one GPU's SMs the kernel's processes kept busy, summed over gpu_devices (NVML
   * per-process samples); null where not reported (gpu_utilization_reason says why).
   */
  gpu_utilization?: number | null;
  gpu_utilization_reason?: string | null;
  /** Indices of the GPUs the kernel holds memory on. */
  gpu_devices?: number[];
  /** Unix seconds of the kernel's last transition to idle; null while not idle. */
  idle_since?: number | null;
  /**
   * Idle for TorchlabExtension.gpu_idle_warn or longer while holding GPU memory. cull_at: when
   * the opt-in gpu_idle_cull shuts it down (absent when culling is off).
   */
  holding_idle?: { seconds: number; bytes: number; cull_at?: number } | null;
  /** Busy and holding GPU memory, but its GPU share stayed low: the GPU waits (for data?). */
  gpu_waiting?: { seconds: number; utilization: number } | null;
  /** Notebook path relative to the server root, when a session names one. */
  path: string | null;
  /** Why resources are not shown, e.g. the kernel is not a local process. */
  reason: string | null;
  /**
   * The kernel's process is stopped (SIGSTOP, a debugger, the OOM reaper): it runs nothing, so
   * its state is frozen. null when it has no local process; absent from older servers.
   */
  stopped?: boolean | null;
  /**
   * Where cpu_percent and memory come from: 'process' (the server measured the local
   * process tree), 'kernel' (a kernel that is not a local process answered usage_request),
   * null (nowhere). Absent from servers older than this field.
   */
  source?: 'process' | 'kernel' | null;
  /** Seconds since the kernel-reported figures arrived (source 'kernel'), else null. */
  usage_age?: number | null;
  /**
   * The kernel's published runs (tl.progress, tqdm drop-in bars, tl.fit): running ones and the
   * most recently ended. Absent from servers older than this field.
   */
  runs?: IRun[];
}

export type RunState = 'running' | 'finished' | 'failed' | 'interrupted';

/**
 * One run a kernel published (its runs file beside the connection file), as the server serves
 * it: in the snapshot per kernel, and at GET torchlab/api/runs. Keyed by (kernel_id, id).
 */
export interface IRun {
  /** Unique within the kernel process ("<pid>-<counter>"). */
  id: string;
  kind: 'progress' | 'fit';
  /** The bar's description ('' when none; "fit" for tl.fit). */
  desc: string;
  n: number;
  total: number | null;
  /** "it", "batch", ... */
  unit: string;
  /**
   * The share done, 0-1 (progress: n/total; fit: of all its epochs, while n/total counts the
   * batches of the epoch in progress); null when unknown.
   */
  fraction?: number | null;
  /** Units per second. */
  rate: number | null;
  /** Seconds left (fit: of the whole fit); null once ended. */
  eta: number | null;
  elapsed: number;
  /** Unix seconds. */
  started: number;
  updated: number;
  ended: number | null;
  state: RunState;
  /** The exception's first line, for 'failed'. */
  error: string | null;
  /** The latest loss/accuracy/postfix numbers. */
  metrics: { [name: string]: number };
  epoch: number | null;
  epochs: number | null;
  /** tqdm's own text line for the bar (format_meter), so a page can draw it without the widget. */
  line: string;
  /** The notebook cell that runs it (the execute_request's cellId), when known. */
  cell_id: string | null;
  /** The execute_request that runs it. */
  msg_id: string | null;
  kernel_id: string;
  /** The notebook path, or null. */
  path: string | null;
}

/** A kernel process that died, as the server explains it (GET torchlab/api/events). */
export interface IKernelDeath {
  id: string;
  kernel_id: string;
  name: string;
  path: string | null;
  /** Unix seconds when the server noticed. */
  time: number;
  pid: number | null;
  cause: 'oom_killer' | 'signal' | 'exit' | 'unknown';
  /** A sentence for people, with what to do. */
  reason: string;
  signal: number | null;
  exit_status: number | null;
  last_memory: number | null;
  peak_memory: number | null;
  memory_limit: number | null;
  restarting: boolean;
}

export interface ISnapshot {
  /** Unix seconds on the server when the snapshot was taken. */
  time: number;
  host: IHost | null;
  gpus: IGpu[];
  gpu_reason: string | null;
  kernels: IKernel[];
  errors: { [source: string]: string };
  /** Recent kernel deaths, oldest first; absent from older servers. */
  events?: IKernelDeath[];
  /** Recent warnings and shutdowns of idle GPU holders (gpu_idle_cull), oldest first. */
  gpu_actions?: IGpuAction[];
  /** Recent interrupts by TorchlabExtension.memory_guard, oldest first. */
  memory_guard?: IMemoryGuardEvent[];
  /**
   * Since the server started, by label: kernel_deaths by cause, kernel_idle_gpu_actions by
   * action (warned, culled), memory_guard_interrupts by measure; absent from older servers.
   */
  counts?: { [kind: string]: { [label: string]: number } };
}

/** A kernel the memory guard interrupted near its memory limit (server/memory_guard.py). */
export interface IMemoryGuardEvent {
  id: string;
  kernel_id: string;
  name: string;
  path: string | null;
  /** Unix seconds when the server decided to interrupt. */
  time: number;
  pid: number;
  /** Bytes compared with the limit, and the limit. */
  memory: number;
  memory_limit: number;
  /** 'cgroup': the kernel's memory cgroup limit; 'host': the host's memory. */
  limit_source: 'cgroup' | 'host';
  /** 'cgroup': its own cgroup's unreclaimable charge; 'tree': its process tree's memory. */
  measure: 'cgroup' | 'tree';
  fraction: number;
  /** The sentence the notebook shows. */
  reason: string;
}

/** TorchlabExtension.gpu_idle_cull warned a kernel, or shut it down. */
export interface IGpuAction {
  action: 'warned' | 'culled';
  kernel_id: string;
  path: string | null;
  name: string | null;
  /** Unix seconds. */
  time: number;
  /** How long it had been idle, and the GPU memory it held. */
  seconds: number;
  bytes: number;
  /** For 'warned': the grace period before the shutdown, seconds. */
  grace?: number;
}
