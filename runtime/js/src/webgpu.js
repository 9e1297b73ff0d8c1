// The WebGPU backend: runs a bundle's dispatch schedule exactly as the native runtime does (runtime/src/session.rs):
// explicit bind group layouts (operands read-only, then the output, then the params uniform), every dispatch's
// params at a 256-byte aligned offset of one uniform buffer, buffers and bind groups made once at the symbols'
// maxima, (x, y) workgroup grids, one compute pass per run.

import { fail } from './errors.js';
import { fetchText } from './loader.js';
import { evaluate, isNeeded, wantedOutputs } from './manifest.js';

const PARAMS_ALIGN = 256;
const MAX_WORKGROUPS_PER_DIM = 65535;

const roundUp = (n, multiple) => Math.ceil(n / multiple) * multiple;
const bufferSize = (bytes) => Math.max(4, roundUp(bytes, 4));
// A dispatch's slice of the params uniform: whole vec4<u32>s, at least one.
const paramsBytes = (count) => Math.max(1, Math.ceil(count / 4)) * 16;

// An adapter that meets the bundle's needs, or an error naming every one it does not meet. A software adapter (a GPU
// emulated on the CPU) is refused unless `software` is set.
async function requestAdapter(requires, software) {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) {
    fail('webgpu-unavailable', 'this browser offers no WebGPU (navigator.gpu is missing; browsers offer it only to ' +
      'https:// and localhost pages, and some only behind a flag)');
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) fail('webgpu-unavailable', 'WebGPU found no usable GPU adapter (it may be blocklisted or disabled)');
  if (adapter.info?.isFallbackAdapter && !software) {
    fail('webgpu-unavailable', `the only WebGPU adapter (${adapter.info.architecture || adapter.info.vendor}) runs on the CPU`);
  }
  const missing = [];
  for (const [name, value] of Object.entries(requires.limits)) {
    const have = adapter.limits[name];
    if (have === undefined) missing.push(`the limit ${name}, which this browser does not know`);
    else if (have < value) missing.push(`${name} ≥ ${value} (it has ${have})`);
  }
  for (const feature of requires.features) {
    if (!adapter.features.has(feature)) missing.push(`the feature ${feature}`);
  }
  if (missing.length) fail('device-limits', `this GPU cannot run the bundle: it needs ${missing.join(', ')}`);
  return adapter;
}

function bindGroupLayout(device, bindings) {
  const entries = Array.from({ length: bindings }, (_, i) => ({
    binding: i,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: i + 1 < bindings ? 'read-only-storage' : 'storage' },
  }));
  entries.push({ binding: bindings, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
  return device.createBindGroupLayout({ entries });
}

export class WebGpuBackend {
  /**
   * Opens a device with the bundle's limits and allocates its buffers; `compile` and `writeChunk` follow.
   * `software`: accept an adapter that emulates a GPU on the CPU.
   */
  static async open(manifest, { software }) {
    const adapter = await requestAdapter(manifest.requires, software);
    let device;
    try {
      device = await adapter.requestDevice({ requiredLimits: manifest.requires.limits, requiredFeatures: manifest.requires.features });
    } catch (e) {
      fail('webgpu-unavailable', `the GPU adapter refused to open a device: ${e.message}`, e);
    }
    return new WebGpuBackend(device, manifest, `${adapter.info?.vendor ?? ''} ${adapter.info?.architecture ?? ''}`.trim());
  }

  // Every buffer is allocated once, weights at their size and the others at their size for the symbols' maxima, so
  // a run with other symbol values only rewrites the params uniform and the workgroup counts.
  constructor(device, manifest, description) {
    this.name = 'webgpu';
    this.description = description || 'WebGPU';
    this.device = device;
    this.manifest = manifest;
    device.lost.then((info) => { this.lost = info; });
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    const maxima = Object.fromEntries(manifest.symbols.map((s) => [s.name, s.max]));
    this.buffers = manifest.buffers.map((b, i) => device.createBuffer({
      label: `${b.kind} buffer ${i}`,
      size: bufferSize(evaluate(b.size, maxima)),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    }));
    this.paramsOffsets = [];
    let size = 0;
    for (const d of manifest.dispatches) {
      this.paramsOffsets.push(size);
      size = roundUp(size + paramsBytes(d.params.length), PARAMS_ALIGN);
    }
    this.params = device.createBuffer({ label: 'params', size: Math.max(16, size), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    // Where each piece of each chunk goes: [buffer, offset in the buffer, piece].
    this.pieces = manifest.chunks.map(() => []);
    for (const w of manifest.weights) {
      let at = 0;
      for (const piece of w.pieces) {
        this.pieces[piece.chunk].push([this.buffers[w.buffer], at, piece]);
        at += piece.size;
      }
    }
  }

  /** Fetches the shaders from `base`, builds their pipelines and every dispatch's bind group. */
  async compile(base) {
    const { device, manifest } = this;
    const bindings = manifest.shaders.map((_, i) => manifest.dispatches.find((d) => d.shader === i)?.bindings.length ?? 1);
    const layouts = bindings.map((n) => bindGroupLayout(device, n));
    this.bindGroups = manifest.dispatches.map((d, i) => device.createBindGroup({
      label: d.node,
      layout: layouts[d.shader],
      entries: [
        ...d.bindings.map((b, slot) => ({ binding: slot, resource: { buffer: this.buffers[b] } })),
        {
          binding: d.bindings.length,
          resource: { buffer: this.params, offset: this.paramsOffsets[i], size: paramsBytes(d.params.length) },
        },
      ],
    }));
    this.pipelines = await Promise.all(manifest.shaders.map(async (shader, i) => {
      const module = device.createShaderModule({ label: shader.file, code: await fetchText(new URL(shader.file, base)) });
      try {
        return await device.createComputePipelineAsync({
          label: shader.file,
          layout: device.createPipelineLayout({ bindGroupLayouts: [layouts[i]] }),
          compute: { module, entryPoint: shader.entry_point },
        });
      } catch (e) {
        const { messages } = await module.getCompilationInfo();
        const errors = messages.filter((m) => m.type === 'error').map((m) => `line ${m.lineNum}: ${m.message}`);
        return fail('gpu', `the GPU could not compile ${shader.file}: ${errors.join('; ') || e.message}`, e);
      }
    }));
  }

  /** Copies the weight pieces of chunk `index` into their buffers. */
  writeChunk(index, bytes) {
    for (const [buffer, at, piece] of this.pieces[index]) {
      this.device.queue.writeBuffer(buffer, at, bytes, piece.offset, piece.size);
    }
  }

  /** Waits for the uploads and reports any GPU error of the loading. */
  async finish() {
    await this.device.queue.onSubmittedWorkDone();
    await this.#checkErrorScopes('loading the bundle');
  }

  async #checkErrorScopes(what) {
    const errors = [await this.device.popErrorScope(), await this.device.popErrorScope()].filter(Boolean);
    if (errors.length) fail('gpu', `GPU error while ${what}: ${errors.map((e) => e.message).join('; ')}`);
  }

  /** Zeroes the state buffers (a decoder's KV cache). */
  resetStates() {
    const encoder = this.device.createCommandEncoder();
    this.manifest.buffers.forEach((b, i) => b.kind === 'state' && encoder.clearBuffer(this.buffers[i]));
    this.device.queue.submit([encoder.finish()]);
  }

  /**
   * Runs the dispatches on the inputs ([{buffer, data}], typed arrays) and reads back the outputs named in `wanted`
   * (all if not given); dispatches that none of them needs are skipped.
   */
  async run(env, values, wanted) {
    if (this.lost) fail('gpu', `the GPU device was lost (${this.lost.message || this.lost.reason}); load the model again`);
    const key = JSON.stringify(Object.entries(env).sort());
    if (this.last?.key !== key) this.last = { key, workgroups: this.#writeParams(env) };
    const { device, manifest } = this;
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    for (const { buffer, data } of values) {
      if (data.length) device.queue.writeBuffer(this.buffers[buffer], 0, data);
    }
    const selected = wantedOutputs(manifest, wanted);
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    manifest.dispatches.forEach((d, i) => {
      const [x, y] = this.last.workgroups[i];
      if (x === 0 || !isNeeded(d, selected)) return;
      pass.setPipeline(this.pipelines[d.shader]);
      pass.setBindGroup(0, this.bindGroups[i]);
      pass.dispatchWorkgroups(x, y);
    });
    pass.end();
    const outputs = selected.map((decl) => {
      const shape = decl.shape.map((d) => evaluate(d, env));
      const count = shape.reduce((a, b) => a * b, 1);
      const usage = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
      const staging = device.createBuffer({ label: decl.name, size: bufferSize(count * 4), usage });
      encoder.copyBufferToBuffer(this.buffers[decl.buffer], 0, staging, 0, staging.size);
      return { decl, shape, count, staging };
    });
    device.queue.submit([encoder.finish()]);
    const mapped = Promise.all(outputs.map((out) => out.staging.mapAsync(GPUMapMode.READ)));
    mapped.catch(() => {}); // a failed map follows a GPU error, which the error scopes report
    try {
      await this.#checkErrorScopes('running the model');
      await mapped;
      const result = {};
      for (const { decl, shape, count, staging } of outputs) {
        const Type = decl.dtype === 'i32' ? Int32Array : Float32Array;
        result[decl.name] = { data: new Type(staging.getMappedRange(0, count * 4).slice(0)), shape };
      }
      return result;
    } finally {
      for (const { staging } of outputs) staging.destroy();
    }
  }

  // Writes every dispatch's params for the symbol values `env`; returns each dispatch's (x, y) workgroups.
  #writeParams(env) {
    const words = new Uint32Array(this.params.size / 4);
    const workgroups = this.manifest.dispatches.map((d, i) => {
      d.params.forEach((p, k) => {
        const v = evaluate(p, env);
        if (v > 0xffffffff) fail('input', `${d.node}: a size (${v}) does not fit in 32 bits; use shorter inputs`);
        words[this.paramsOffsets[i] / 4 + k] = v;
      });
      const total = evaluate(d.workgroups, env);
      const x = Math.min(total, MAX_WORKGROUPS_PER_DIM);
      const y = x === 0 ? 0 : Math.ceil(total / x);
      if (y > MAX_WORKGROUPS_PER_DIM) {
        fail('device-limits', `${d.node}: ${total} workgroups are more than a dispatch can hold; use shorter inputs`);
      }
      return [x, y];
    });
    this.device.queue.writeBuffer(this.params, 0, words);
    return workgroups;
  }

  dispose() {
    for (const buffer of [...this.buffers, this.params]) buffer.destroy();
    this.device.destroy();
  }
}
