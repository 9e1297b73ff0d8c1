// The WebGPU backend: runs a bundle's dispatch schedule exactly as the native runtime does (runtime/src/session.rs):
// explicit bind group layouts (operands read-only, then the output, then the params uniform), every dispatch's
// params at a 256-byte aligned offset of one uniform buffer, (x, y) workgroup grids, one compute pass per run.

import { fail } from './errors.js';
import { fetchText } from './loader.js';
import { evaluate } from './manifest.js';

const PARAMS_ALIGN = 256;
const MAX_WORKGROUPS_PER_DIM = 65535;

const roundUp = (n, multiple) => Math.ceil(n / multiple) * multiple;
const bufferSize = (bytes) => Math.max(4, roundUp(bytes, 4));

// An adapter that meets the bundle's needs, or an error naming every one it does not meet.
async function requestAdapter(requires) {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) {
    fail('webgpu-unavailable', 'this browser offers no WebGPU (navigator.gpu is missing; browsers offer it only to ' +
      'https:// and localhost pages, and some only behind a flag)');
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) fail('webgpu-unavailable', 'WebGPU found no usable GPU adapter (it may be blocklisted or disabled)');
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
  /** Opens a device with the bundle's limits and creates its weight buffers; `compile` and `writeChunk` follow. */
  static async open(manifest) {
    const adapter = await requestAdapter(manifest.requires);
    let device;
    try {
      device = await adapter.requestDevice({ requiredLimits: manifest.requires.limits, requiredFeatures: manifest.requires.features });
    } catch (e) {
      fail('webgpu-unavailable', `the GPU adapter refused to open a device: ${e.message}`, e);
    }
    return new WebGpuBackend(device, manifest, `${adapter.info?.vendor ?? ''} ${adapter.info?.architecture ?? ''}`.trim());
  }

  constructor(device, manifest, description) {
    this.name = 'webgpu';
    this.description = description || 'WebGPU';
    this.device = device;
    this.manifest = manifest;
    device.lost.then((info) => { this.lost = info; });
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    this.weights = new Map();
    manifest.buffers.forEach((b, i) => {
      if (b.kind !== 'weight') return;
      this.weights.set(i, device.createBuffer({
        label: `weights ${i}`,
        size: bufferSize(evaluate(b.size, {})),
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      }));
    });
    // Where each piece of each chunk goes: [buffer, offset in the buffer, piece].
    this.pieces = manifest.chunks.map(() => []);
    for (const w of manifest.weights) {
      let at = 0;
      for (const piece of w.pieces) {
        this.pieces[piece.chunk].push([this.weights.get(w.buffer), at, piece]);
        at += piece.size;
      }
    }
  }

  /** Fetches the shaders from `base` and builds their pipelines. */
  async compile(base) {
    const { device, manifest } = this;
    const bindings = manifest.shaders.map((_, i) => manifest.dispatches.find((d) => d.shader === i)?.bindings.length ?? 1);
    this.layouts = bindings.map((n) => bindGroupLayout(device, n));
    this.pipelines = await Promise.all(manifest.shaders.map(async (shader, i) => {
      const module = device.createShaderModule({ label: shader.file, code: await fetchText(new URL(shader.file, base)) });
      try {
        return await device.createComputePipelineAsync({
          label: shader.file,
          layout: device.createPipelineLayout({ bindGroupLayouts: [this.layouts[i]] }),
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

  /** Runs every dispatch on the inputs (buffer index → typed array) and reads back the outputs. */
  async run(env, values) {
    if (this.lost) fail('gpu', `the GPU device was lost (${this.lost.message || this.lost.reason}); load the model again`);
    const key = JSON.stringify(Object.entries(env).sort());
    if (this.prepared?.key !== key) {
      this.#release();
      this.prepared = this.#prepare(env);
      this.prepared.key = key;
    }
    const { device, manifest } = this;
    const { buffers, bindGroups, workgroups, outputs } = this.prepared;
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    for (const { buffer, data } of values) {
      if (data.length) device.queue.writeBuffer(buffers.get(buffer), 0, data);
    }
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    manifest.dispatches.forEach((d, i) => {
      const [x, y] = workgroups[i];
      if (x === 0) return;
      pass.setPipeline(this.pipelines[d.shader]);
      pass.setBindGroup(0, bindGroups[i]);
      pass.dispatchWorkgroups(x, y);
    });
    pass.end();
    for (const out of outputs) encoder.copyBufferToBuffer(this.#buffer(out.decl.buffer), 0, out.staging, 0, out.staging.size);
    device.queue.submit([encoder.finish()]);
    const mapped = Promise.all(outputs.map((out) => out.staging.mapAsync(GPUMapMode.READ)));
    mapped.catch(() => {}); // a failed map follows a GPU error, which the error scopes report
    await this.#checkErrorScopes('running the model');
    await mapped;
    const result = {};
    for (const { decl, shape, count, staging } of outputs) {
      const Type = decl.dtype === 'i32' ? Int32Array : Float32Array;
      result[decl.name] = { data: new Type(staging.getMappedRange(0, count * 4).slice(0)), shape };
      staging.unmap();
    }
    return result;
  }

  #buffer(index) {
    return this.weights.get(index) ?? this.prepared.buffers.get(index);
  }

  // Allocates the input and activation buffers for the symbol values `env`, packs the params uniform, and builds
  // the bind groups and output read-back buffers.
  #prepare(env) {
    const { device, manifest } = this;
    const maxBinding = device.limits.maxStorageBufferBindingSize;
    const buffers = new Map();
    manifest.buffers.forEach((b, i) => {
      if (b.kind === 'weight') return;
      const size = bufferSize(evaluate(b.size, env));
      if (size > maxBinding) {
        fail('device-limits', `buffer ${i} needs ${size} bytes for these inputs, more than this GPU's ` +
          `maxStorageBufferBindingSize (${maxBinding}); use shorter inputs or a smaller batch`);
      }
      buffers.set(i, device.createBuffer({
        label: `buffer ${i}`,
        size,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
      }));
    });

    const words = [];
    const ranges = [];
    const workgroups = manifest.dispatches.map((d) => {
      const offset = words.length * 4;
      for (const p of d.params) {
        const v = evaluate(p, env);
        if (v > 0xffffffff) fail('input', `${d.node}: a size (${v}) does not fit in 32 bits; use shorter inputs`);
        words.push(v);
      }
      const size = Math.max(1, Math.ceil(d.params.length / 4)) * 16;
      while (words.length * 4 < roundUp(offset + size, PARAMS_ALIGN)) words.push(0);
      ranges.push([offset, size]);
      const total = evaluate(d.workgroups, env);
      const x = Math.min(total, MAX_WORKGROUPS_PER_DIM);
      const y = x === 0 ? 0 : Math.ceil(total / x);
      if (y > MAX_WORKGROUPS_PER_DIM) {
        fail('device-limits', `${d.node}: ${total} workgroups are more than a dispatch can hold; use shorter inputs`);
      }
      return [x, y];
    });
    const params = device.createBuffer({
      label: 'params',
      size: Math.max(16, words.length * 4),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(params, 0, new Uint32Array(words));

    const lookup = (i) => this.weights.get(i) ?? buffers.get(i);
    const bindGroups = manifest.dispatches.map((d, i) => device.createBindGroup({
      label: d.node,
      layout: this.layouts[d.shader],
      entries: [
        ...d.bindings.map((b, slot) => ({ binding: slot, resource: { buffer: lookup(b) } })),
        { binding: d.bindings.length, resource: { buffer: params, offset: ranges[i][0], size: ranges[i][1] } },
      ],
    }));

    const outputs = manifest.outputs.map((decl) => {
      const shape = decl.shape.map((d) => evaluate(d, env));
      const count = shape.reduce((a, b) => a * b, 1);
      const usage = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
      const staging = device.createBuffer({ label: decl.name, size: bufferSize(count * 4), usage });
      return { decl, shape, count, staging };
    });
    return { buffers, params, bindGroups, workgroups, outputs };
  }

  #release() {
    if (!this.prepared) return;
    const { buffers, params, outputs } = this.prepared;
    for (const buffer of [...buffers.values(), params, ...outputs.map((o) => o.staging)]) buffer.destroy();
    this.prepared = undefined;
  }

  dispose() {
    this.#release();
    for (const buffer of this.weights.values()) buffer.destroy();
    this.device.destroy();
  }
}
