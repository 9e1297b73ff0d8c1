// Types of tfc.js, the runtime every tfc bundle carries. Guide: docs/js-api.md in the tfc repository.

/** Loads the bundle in the folder at `url` (relative URLs resolve against the page or worker). */
export function load(url: string | URL, options?: LoadOptions): Promise<Model>;

export interface LoadOptions {
  /** Called as weight bytes arrive (from the network or the cache). */
  onProgress?: (progress: Progress) => void;
  /**
   * `auto` (the default) takes WebGPU when a GPU can run the bundle, else the bundle's WASM fallback (also when
   * WebGPU would run on the CPU, which is far slower), else WebGPU on the CPU.
   */
  backend?: 'auto' | 'webgpu' | 'wasm';
  /** Threads of the WASM fallback: more than 1 needs a cross-origin isolated page (default: every core there, else 1). */
  threads?: number;
  /** Keep weight chunks in the Cache API, keyed by their sha256 (default true). */
  cache?: boolean;
}

export interface Progress {
  /** Bytes of weight chunks received so far. */
  loaded: number;
  /** Bytes of all weight chunks. */
  total: number;
  /** loaded / total, from 0 to 1. */
  fraction: number;
}

/** A tensor: values in row-major order and the shape they have. */
export interface Tensor<T = Float32Array | Int32Array> {
  data: T;
  shape: number[];
}

/** An input: integer ids may be numbers or bigints (each must fit in i32). */
export type TensorInput = Tensor<ArrayLike<number> | ArrayLike<bigint>>;

export interface Model {
  /** The bundle's manifest.json (docs/bundle-format.md). */
  readonly manifest: Manifest;
  /** The bundle's tokenizer, or null if the model came without one. */
  readonly tokenizer: Tokenizer | null;
  readonly backend: 'webgpu' | 'wasm';
  /** What runs the model, e.g. the GPU's vendor and architecture. */
  readonly device: string;
  /** Runs the model. Inputs with a default (attention_mask, token_type_ids, position_ids) may be left out. */
  run(inputs: Record<string, TensorInput>): Promise<Record<string, Tensor>>;
  /** Sentence embeddings of an encoder: last_hidden_state mean-pooled over the tokens, L2-normalised. */
  embed(text: string): Promise<Float32Array>;
  embed(texts: string[]): Promise<Float32Array[]>;
  /**
   * Text generation on a decoder bundle: the text after `prompt` (a string, tokenized with the model's special
   * tokens, or token ids), piece by piece as tokens are drawn; a piece never splits a character. Ends at an
   * end-of-sequence token of the model, a stop string (left out), `maxTokens`, or a full KV cache. Chat templates are
   * not applied. Throws `generation-unavailable` for a bundle that is not a decoder, `no-tokenizer` without one.
   */
  generate(prompt: string | ArrayLike<number>, options?: GenerateOptions): AsyncGenerator<string>;
  /** The generated token ids that `generate` turns into text (the end-of-sequence token left out). */
  generateTokens(promptIds: ArrayLike<number>, options?: GenerateOptions): AsyncGenerator<number>;
  /** Frees the GPU memory; later calls fail with `disposed`. */
  dispose(): void;
}

/** How `generate` picks tokens: the options of `tfc generate`, with the same defaults (greedy). */
export interface GenerateOptions {
  /** The most tokens to generate (default 64). */
  maxTokens?: number;
  /** Divides the logits before sampling; 0 (the default) picks the most likely token. */
  temperature?: number;
  /** Sample among the K most likely tokens only (0, the default: all). */
  topK?: number;
  /** Sample among the most likely tokens that make up this much probability (1, the default: all). */
  topP?: number;
  /** Drop tokens less likely than this fraction of the most likely one (default 0). */
  minP?: number;
  /** Makes tokens among the last `repeatLastN` less likely (1, the default: off). */
  repeatPenalty?: number;
  /** How many of the latest tokens, prompt included, the repeat penalty looks at (default 64, at most the bundle's 64). */
  repeatLastN?: number;
  /** Seed of the random numbers (ChaCha8, as the native runtime's): the same seed gives the same tokens. Default 0. */
  seed?: number | bigint;
  /** Generation ends before the first of these strings appears in the text. */
  stop?: string[];
}

/** A HuggingFace tokenizer.json: WordPiece (BERT family) and byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2) models. */
export class Tokenizer {
  /** Throws `tokenizer-unsupported`, naming the part, for a tokenizer.json that uses something not implemented. */
  constructor(json: object);
  /** Token ids, with the model's special tokens unless `addSpecialTokens` is false. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of the ids; special tokens are left out unless `skipSpecialTokens` is false. */
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
}

export type TfcErrorCode =
  /** manifest.json or tokenizer.json is invalid, or from another format version. */
  | 'bad-bundle'
  /** A file could not be downloaded (after retries for transient failures). */
  | 'network'
  /** A weight chunk's size or sha256 differs from the manifest's. Nothing was run. */
  | 'integrity'
  /** The browser refused to store a chunk in the Cache API. Free space or load with { cache: false }. */
  | 'storage-quota'
  /** No SubtleCrypto: the page is not https:// or localhost. */
  | 'insecure-context'
  /** No WebGPU, no adapter, or the adapter would not open a device. */
  | 'webgpu-unavailable'
  /** The GPU lacks limits or features the bundle needs (the message names each one). */
  | 'device-limits'
  /** The WASM fallback cannot run: the bundle has none, or the browser lacks SIMD128 (or threads, if asked for). */
  | 'wasm-unavailable'
  /** The WASM fallback failed while running; load the model again. */
  | 'wasm-failed'
  /** A GPU error (shader compilation, validation, out of memory, device lost). */
  | 'gpu'
  /** Inputs that do not fit the model: unknown names, wrong shapes, values over the model's limits. */
  | 'input'
  /** An option with a value load() does not know. */
  | 'bad-option'
  | 'no-tokenizer'
  | 'tokenizer-unsupported'
  /** embed() on a bundle without a last_hidden_state output. */
  | 'not-an-encoder'
  /** generate() on a bundle that is not a decoder with a KV cache. */
  | 'generation-unavailable'
  /** Another run() or generate() used the model's KV cache while this generation was going on. */
  | 'interrupted'
  | 'disposed';

export class TfcError extends Error {
  readonly code: TfcErrorCode;
}

/** manifest.json, version 1 (docs/bundle-format.md). */
export interface Manifest {
  format: 'tfc-bundle';
  version: 1;
  model: Record<string, string>;
  symbols: { name: string; max: number }[];
  inputs: { name: string; dtype: string; shape: Expr[]; buffer: number; default?: 'zeros' | 'ones' | 'positions' }[];
  outputs: { name: string; dtype: string; shape: Expr[]; buffer: number }[];
  buffers: { kind: 'input' | 'weight' | 'activation' | 'state'; size: Expr }[];
  weights: { name: string; dtype: string; shape: number[]; buffer: number; pieces: { chunk: number; offset: number; size: number }[] }[];
  chunks: { file: string; size: number; sha256: string }[];
  shaders: { file: string; entry_point: string; workgroup_size: number }[];
  dispatches: { node: string; op: string; shader: number; bindings: number[]; params: Expr[]; workgroups: Expr; needed_by?: number[] }[];
  requires: { features: string[]; limits: Record<string, number> };
  tokenizer: string | null;
  wasm?: { module: string; shared_module: string; kernels: string[]; dispatches: { kernel: number; params: Expr[] }[]; memory: number };
}

/** A number, a symbol name, or [operator, ...operands] with operator add, mul, max, sub or ceil_div. */
export type Expr = number | string | [string, ...Expr[]];
