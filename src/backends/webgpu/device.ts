/**
 * The WebGPU device, shared by every webgpu backend instance of the process: the adapter's real limits,
 * shader-f16 when the adapter offers it and the start-up self-check proves it right, the pipeline
 * cache (keyed by kernel and overridable constants), buffer accounting and error collection.
 * @module
 */
import { type KernelName, KERNELS } from "./kernels.ts";
import { LlmError } from "../../errors.ts";

/** Usage flags of every tensor buffer. */
export const STORAGE: number = 0x80 | 0x4 | 0x8; // STORAGE | COPY_SRC | COPY_DST

/** Limits the backend plans with (the adapter's, as granted to the device). */
export interface GpuLimits {
  /** Largest storage buffer binding (a tensor part must fit one). */
  readonly maxBinding: number;
  /** Largest buffer. */
  readonly maxBuffer: number;
  /** Workgroup memory per workgroup, bytes. */
  readonly workgroupStorage: number;
  /** Storage buffer offset alignment. */
  readonly storageAlign: number;
  /** Workgroups per dispatch dimension. */
  readonly maxWorkgroups: number;
}

/** Overridable constants of a pipeline. */
export type Constants = Record<string, number | boolean>;

/** A pipeline and the layout of its group 0. */
export interface Pipeline {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly kernel: KernelName;
}

/** The shared device. */
export class Gpu {
  readonly device: GPUDevice;
  readonly name: string;
  /** A software adapter (lavapipe, WARP): usable, but not preferred over ref by `auto`. */
  readonly fallback: boolean;
  readonly limits: GpuLimits;
  /** The device was created with shader-f16. */
  readonly hasF16: boolean;
  /** The device can time passes (timestamp-query), for profiling. */
  readonly hasTimestamps: boolean;
  /**
   * WGSL has dot4I8Packed (language feature packed_4x8_integer_dot_product). Where it does not, kernel
   * sources get the call swapped for their own `dot4I8Fallback` before compiling.
   */
  readonly hasDot4: boolean;
  /** shader-f16 passed the self-check: the f16 kernel variants may be used. */
  f16Ok = false;
  /** Why f16 variants are off, when they are. */
  f16Note = "";
  /** The layout of bind group 1 (step block and sampled tokens), shared by every kernel. */
  readonly stepLayout: GPUBindGroupLayout;
  /** Uncaptured device errors not yet reported. */
  readonly errors: string[] = [];
  lost?: string;
  #modules = new Map<KernelName, GPUShaderModule>();
  #layouts = new Map<KernelName, { group0: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>();
  #pipelines = new Map<string, Pipeline>();
  #bytes = 0;
  #sizes = new WeakMap<GPUBuffer, number>();

  constructor(device: GPUDevice, name: string, fallback: boolean, hasDot4 = false) {
    this.device = device;
    this.hasDot4 = hasDot4;
    this.name = name;
    this.fallback = fallback;
    const l = device.limits;
    this.limits = {
      maxBinding: l.maxStorageBufferBindingSize,
      maxBuffer: l.maxBufferSize,
      workgroupStorage: l.maxComputeWorkgroupStorageSize,
      storageAlign: l.minStorageBufferOffsetAlignment,
      maxWorkgroups: l.maxComputeWorkgroupsPerDimension,
    };
    this.hasF16 = device.features.has("shader-f16");
    this.hasTimestamps = device.features.has("timestamp-query");
    this.stepLayout = device.createBindGroupLayout({
      label: "step",
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "read-only-storage" } },
        { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } },
      ],
    });
    device.addEventListener("uncapturederror", (e) => {
      const msg = (e as GPUUncapturedErrorEvent).error.message;
      if (this.errors.length < 16) this.errors.push(msg);
    });
    device.lost.then((info) => {
      this.lost = `${info.reason}: ${info.message}`;
    });
  }

  /** Bytes in live buffers made through {@link Gpu.buffer}. */
  get bytes(): number {
    return this.#bytes;
  }

  /** A buffer, counted in {@link Gpu.bytes}. */
  buffer(size: number, usage: number, label: string): GPUBuffer {
    const bytes = Math.max(16, Math.ceil(size / 16) * 16);
    if (bytes > this.limits.maxBuffer) {
      throw new LlmError(
        "OUT_OF_MEMORY",
        `webgpu: ${label} needs a ${bytes}-byte buffer, over the adapter's limit of ${this.limits.maxBuffer}; ` +
          `use a smaller context or model`,
      );
    }
    const b = this.device.createBuffer({ size: bytes, usage, label });
    this.#sizes.set(b, bytes);
    this.#bytes += bytes;
    return b;
  }

  /** Destroy a buffer made by {@link Gpu.buffer}. */
  destroy(b: GPUBuffer | undefined): void {
    if (!b) return;
    const n = this.#sizes.get(b);
    if (n === undefined) return;
    this.#sizes.delete(b);
    this.#bytes -= n;
    b.destroy();
  }

  /** Throw when the device reported an error or was lost since the last check. */
  check(what: string): void {
    if (this.lost) throw new LlmError("BACKEND_UNAVAILABLE", `webgpu: device lost (${this.lost}); ${what}`);
    if (this.errors.length) {
      const msg = this.errors.splice(0).join("; ");
      throw new LlmError("INTERNAL", `webgpu: ${what} failed: ${msg}`);
    }
  }

  #layout(kernel: KernelName): { group0: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
    let l = this.#layouts.get(kernel);
    if (!l) {
      const k = KERNELS[kernel];
      const group0 = this.device.createBindGroupLayout({
        label: kernel,
        entries: k.bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === "uniform" ? "uniform" : kind === "rw" ? "storage" : "read-only-storage" },
        })),
      });
      const groups = k.usesStep ? [group0, this.stepLayout] : [group0];
      l = { group0, pipeline: this.device.createPipelineLayout({ label: kernel, bindGroupLayouts: groups }) };
      this.#layouts.set(kernel, l);
    }
    return l;
  }

  /** The pipeline of `kernel` with these constants (cached). */
  pipeline(kernel: KernelName, constants: Constants = {}): Pipeline {
    const k = KERNELS[kernel];
    const names = Object.keys(constants).sort();
    for (const n of names) {
      if (!k.overrides.includes(n)) throw new LlmError("INTERNAL", `webgpu: ${kernel} has no constant ${n}`);
    }
    const key = `${kernel}|${names.map((n) => `${n}=${Number(constants[n])}`).join(",")}`;
    let p = this.#pipelines.get(key);
    if (!p) {
      if (k.f16 && !this.hasF16) throw new LlmError("INTERNAL", `webgpu: ${kernel} needs shader-f16`);
      let module = this.#modules.get(kernel);
      if (!module) {
        const code = this.hasDot4 ? k.code : k.code.replaceAll("dot4I8Packed(", "dot4I8Fallback(");
        module = this.device.createShaderModule({ label: kernel, code });
        this.#modules.set(kernel, module);
      }
      const layout = this.#layout(kernel);
      const values: Record<string, number> = {};
      for (const n of names) values[n] = Number(constants[n]);
      const pipeline = this.device.createComputePipeline({
        label: key,
        layout: layout.pipeline,
        compute: { module, entryPoint: "main", constants: values },
      });
      p = { pipeline, layout: layout.group0, kernel };
      this.#pipelines.set(key, p);
    }
    return p;
  }

  /** A uniform buffer holding a kernel's Params, fields given by name. */
  params(kernel: KernelName, values: Record<string, number>, label: string): GPUBuffer {
    const fields = KERNELS[kernel].params;
    const data = new ArrayBuffer(Math.max(16, Math.ceil(fields.length / 4) * 16));
    const dv = new DataView(data);
    fields.forEach(([name, type], i) => {
      const v = values[name];
      if (v === undefined || !Number.isFinite(v)) {
        throw new LlmError("INTERNAL", `webgpu: ${kernel} Params.${name} missing (${label})`);
      }
      if (type === "f32") dv.setFloat32(i * 4, v, true);
      else if (type === "i32") dv.setInt32(i * 4, v, true);
      else dv.setUint32(i * 4, v, true);
    });
    const b = this.buffer(
      data.byteLength,
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      `${label} params`,
    );
    this.device.queue.writeBuffer(b, 0, data);
    return b;
  }

  /** Wait until the queue is idle (costs one map round trip: about 10 ms in Deno 2.9.6). */
  async idle(): Promise<void> {
    const b = this.device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      await b.mapAsync(GPUMapMode.READ);
    } finally {
      b.destroy();
    }
  }
}

let shared: Promise<Gpu> | undefined;

/** Why no device could be opened, when that is the case. */
export interface GpuUnavailable {
  readonly reason: string;
}

/** Open (once per process) the shared device; undefined with a reason when WebGPU is not usable here. */
export async function openGpu(): Promise<Gpu | GpuUnavailable> {
  if (shared) {
    const g = await shared.catch((e) => ({ reason: (e as Error).message }));
    if (g instanceof Gpu && !g.lost) return g;
    if (!(g instanceof Gpu)) return g;
    shared = undefined;
  }
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (!nav?.gpu) return { reason: "this runtime has no WebGPU (navigator.gpu is missing)" };
  shared = (async () => {
    const adapter = await nav.gpu!.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) {
      throw new Error(
        "no WebGPU adapter: install a Vulkan driver (e.g. apt-get install mesa-vulkan-drivers for the CPU one)",
      );
    }
    const want: Record<string, number> = {};
    for (
      const k of [
        "maxStorageBufferBindingSize",
        "maxBufferSize",
        "maxComputeWorkgroupStorageSize",
        "maxStorageBuffersPerShaderStage",
        "maxComputeInvocationsPerWorkgroup",
        "maxComputeWorkgroupSizeX",
        "maxComputeWorkgroupsPerDimension",
      ] as const
    ) want[k] = adapter.limits[k];
    if (want.maxStorageBuffersPerShaderStage < 13) {
      throw new Error(
        `the adapter allows ${want.maxStorageBuffersPerShaderStage} storage buffers per stage; 13 are needed`,
      );
    }
    const features = (["shader-f16", "timestamp-query"] as GPUFeatureName[]).filter((f) =>
      adapter.features.has(f)
    );
    const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits: want });
    const info = adapter.info;
    const name = info.description || `${info.vendor} ${info.device}`.trim() || "WebGPU adapter";
    const wgsl = (nav.gpu as GPU & { wgslLanguageFeatures?: ReadonlySet<string> }).wgslLanguageFeatures;
    const dot4 = wgsl?.has("packed_4x8_integer_dot_product") === true;
    const gpu = new Gpu(device, name, info.isFallbackAdapter === true, dot4);
    if (gpu.hasF16) await selfCheckF16(gpu);
    else gpu.f16Note = "the adapter has no shader-f16";
    return gpu;
  })();
  return await shared.catch((e) => {
    shared = undefined;
    return { reason: (e as Error).message };
  });
}

/**
 * shader-f16 self-check: f16 loads, math, conversions and workgroup memory (f16_check.wgsl), with exact
 * expected values. A wrong or failing result turns the f16 variants off.
 */
async function selfCheckF16(gpu: Gpu): Promise<void> {
  const d = gpu.device;
  const n = 256 * 4;
  const a = new Uint16Array(n), b = new Uint16Array(n);
  const af = new Float32Array(n), bf = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    af[i] = (i % 29) - 14; // small integers: exact in f16
    bf[i] = ((i * 7) % 9) / 2 - 2; // halves
    a[i] = f16Bits(af[i]);
    b[i] = f16Bits(bf[i]);
  }
  const want = new Float32Array(256);
  for (let li = 0; li < 256; li++) {
    const j = 255 - li;
    let s = 0;
    for (let c = 0; c < 4; c++) s += af[j * 4 + c] * bf[j * 4 + c] + af[j * 4 + c];
    want[li] = s;
  }
  d.pushErrorScope("validation");
  d.pushErrorScope("internal");
  try {
    const bufA = d.createBuffer({ size: n * 2, usage: STORAGE });
    const bufB = d.createBuffer({ size: n * 2, usage: STORAGE });
    const out = d.createBuffer({ size: 1024, usage: STORAGE });
    const rb = d.createBuffer({ size: 1024, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    d.queue.writeBuffer(bufA, 0, a);
    d.queue.writeBuffer(bufB, 0, b);
    const p = gpu.pipeline("f16_check");
    const bg = d.createBindGroup({
      layout: p.layout,
      entries: [bufA, bufB, out].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(out, 0, rb, 0, 1024);
    d.queue.submit([enc.finish()]);
    await rb.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(rb.getMappedRange().slice(0));
    rb.unmap();
    for (const x of [bufA, bufB, out, rb]) x.destroy();
    const bad = got.findIndex((v, i) => v !== want[i]);
    if (bad >= 0) {
      gpu.f16Note = `shader-f16 self-check failed: element ${bad} is ${got[bad]}, expected ${want[bad]}`;
    } else {
      gpu.f16Ok = true;
    }
  } catch (e) {
    gpu.f16Note = `shader-f16 self-check threw: ${(e as Error).message}`;
  }
  const errs = [await d.popErrorScope(), await d.popErrorScope()].filter((e) => e);
  if (errs.length) {
    gpu.f16Ok = false;
    gpu.f16Note = `shader-f16 self-check: ${errs.map((e) => e!.message).join("; ")}`;
  }
}

/** f32 -> f16 bits for the small exact values of the self-check. */
function f16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  if (x === 0) return sign;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  return sign | (exp << 10) | ((u >>> 13) & 0x3ff);
}
