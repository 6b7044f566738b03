/**
 * Plain data types shared by the core, the formats and every backend.
 * @module
 */

/**
 * Element types a tensor can hold. Block-quantized types follow ggml's layouts byte for byte so GGUF
 * tensors can be used without conversion; see `src/dtype.ts` for block sizes.
 */
export type DType =
  | "f32"
  | "f16"
  | "bf16"
  | "q8_0"
  | "q4_0"
  | "q4_1"
  | "q4_k"
  | "q6_k"
  | "i8"
  | "i32";

/** A tensor shape, outermost dimension first (row-major): a weight matrix is `(outFeatures, inFeatures)`. */
export type Shape = readonly number[];

/** The backends llama.ts knows about. */
export type BackendName = "ref" | "wasm" | "webgpu" | "cuda";

/** Progress of a long operation (model load, download). `total` is 0 when unknown. */
export interface ProgressEvent {
  /** Which stage is reporting: fetching files, reading the model, or copying weights to the backend. */
  readonly phase: "download" | "load" | "upload";
  /** Work done so far, in bytes. */
  readonly done: number;
  /** Total work in bytes, or 0 when unknown. */
  readonly total: number;
  /** What is being worked on, e.g. a file or tensor name. */
  readonly label?: string;
}

/** Callback for {@link ProgressEvent}s. */
export type ProgressCallback = (event: ProgressEvent) => void;
