use crate::{Bundle, Gpu, Result, RuntimeError};
use std::collections::BTreeMap;
use std::time::Instant;
use tfc_ir::dim::{Env, bind_symbols};
use tfc_ir::manifest::{BufferKind, Manifest};
use tfc_ir::{DType, Expr, Tensor};

/// Byte alignment of each dispatch's slice of the params uniform (WebGPU's minUniformBufferOffsetAlignment default).
const PARAMS_ALIGN: u64 = 256;
const MAX_WORKGROUPS_PER_DIM: u64 = 65535;
/// Dispatches recorded per submission (see `execute`).
const DISPATCHES_PER_SUBMIT: usize = 32;

/// Where the time of one run went.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Preparing inputs, recording and submitting the commands.
    pub host_ms: f64,
    /// From submission until the GPU finished and the outputs were mappable.
    pub wait_ms: f64,
    /// Copying the outputs into host tensors.
    pub readback_ms: f64,
    /// GPU time of each dispatch, in manifest order (empty without timestamp queries).
    pub dispatch_ms: Vec<f64>,
}

/// A loaded bundle on a GPU: pipelines compiled and weights uploaded. Runs the graph on given inputs.
///
/// Every buffer is allocated once, at its size for the symbols' maxima (the compiler keeps those within the
/// bundle's limits), so a run with other symbol values (another sequence length, the next decoding step) only
/// rewrites the params uniform and the workgroup counts.
pub struct Session {
    gpu: Gpu,
    manifest: Manifest,
    pipelines: Vec<wgpu::ComputePipeline>,
    /// Every manifest buffer, by index.
    buffers: Vec<wgpu::Buffer>,
    params: wgpu::Buffer,
    /// Byte offset of each dispatch's slice of `params`.
    params_offsets: Vec<u64>,
    bind_groups: Vec<wgpu::BindGroup>,
    /// The symbol values of the last run and each dispatch's workgroup layout for them.
    last: Option<(Env, Vec<(u32, u32)>)>,
    /// A mappable copy of each output's buffer, by output index, made when the output is first read.
    readback: Vec<Option<wgpu::Buffer>>,
}

impl Session {
    pub fn new(bundle: &Bundle) -> Result<Session> {
        let gpu = Gpu::new(&bundle.manifest.requires)?;
        Session::with_gpu(bundle, gpu)
    }

    pub fn with_gpu(bundle: &Bundle, gpu: Gpu) -> Result<Session> {
        let manifest = bundle.manifest.clone();
        let device = &gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);

        let mut operand_counts = vec![None; manifest.shaders.len()];
        for d in &manifest.dispatches {
            operand_counts[d.shader].get_or_insert(d.bindings.len());
        }
        let mut pipelines = Vec::new();
        let mut layouts = Vec::new();
        for (i, shader) in manifest.shaders.iter().enumerate() {
            let layout = bind_group_layout(device, operand_counts[i].unwrap_or(1));
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&shader.file),
                source: wgpu::ShaderSource::Wgsl(bundle.shader_source(i)?.into()),
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&shader.file),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            pipelines.push(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&shader.file),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(&shader.entry_point),
                compilation_options: Default::default(),
                cache: None,
            }));
            layouts.push(layout);
        }

        let buffers = allocate_buffers(&manifest, device)?;
        upload_weights(bundle, &gpu, &buffers)?;
        let mut params_offsets = Vec::new();
        let mut params_size = 0u64;
        for d in &manifest.dispatches {
            params_offsets.push(params_size);
            params_size = (params_size + params_bytes(d.params.len())).next_multiple_of(PARAMS_ALIGN);
        }
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: params_size.max(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_groups = manifest
            .dispatches
            .iter()
            .zip(&params_offsets)
            .map(|(d, &offset)| {
                let mut entries: Vec<wgpu::BindGroupEntry> = d
                    .bindings
                    .iter()
                    .enumerate()
                    .map(|(slot, &b)| wgpu::BindGroupEntry { binding: slot as u32, resource: buffers[b].as_entire_binding() })
                    .collect();
                entries.push(wgpu::BindGroupEntry {
                    binding: d.bindings.len() as u32,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &params,
                        offset,
                        size: std::num::NonZeroU64::new(params_bytes(d.params.len())),
                    }),
                });
                device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&d.node), layout: &layouts[d.shader], entries: &entries })
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(RuntimeError::Gpu(format!("loading {}: {e}", bundle.dir.display())));
        }
        let readback = vec![None; manifest.outputs.len()];
        Ok(Session { gpu, manifest, pipelines, buffers, params, params_offsets, bind_groups, last: None, readback })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn adapter_name(&self) -> &str {
        &self.gpu.info.name
    }

    /// Runs the graph. `inputs` are by input name; inputs with a default may be left out; i64 values are narrowed
    /// to the bundle's i32 inputs (an id that doesn't fit is an error). Returns every graph output in order.
    /// For a decoder, the tokens are a whole sequence (nothing cached before them).
    pub fn run(&mut self, inputs: &BTreeMap<String, Tensor>) -> Result<Vec<(String, Tensor)>> {
        let fresh = self.fresh_sequence();
        self.execute(inputs, &fresh, &[], false).map(|(outputs, _)| outputs)
    }

    /// A decoder's new tokens must fit in its KV cache after the cached ones.
    fn check_context(&self, env: &Env) -> Result<()> {
        let context = self.manifest.model.get("context_length").and_then(|c| c.parse::<u64>().ok());
        if let (Some(context), Some(past), Some(sequence)) = (context, env.get("past"), env.get("sequence"))
            && past + sequence > context
        {
            return Err(RuntimeError::Input(format!(
                "{sequence} tokens after {past} cached ones exceed the context length of {context}"
            )));
        }
        Ok(())
    }

    /// `past = 0` for a bundle with a KV cache: a run without cached tokens.
    fn fresh_sequence(&self) -> Env {
        self.manifest.symbols.iter().filter(|s| s.name == "past").map(|s| (s.name.clone(), 0)).collect()
    }

    /// Like `run`, with values for symbols that no input's shape gives (`past`, the number of cached tokens), and
    /// only the named outputs (all of them if `outputs` is empty): dispatches no named output needs are skipped.
    pub fn run_with(&mut self, inputs: &BTreeMap<String, Tensor>, symbols: &Env, outputs: &[&str]) -> Result<Vec<(String, Tensor)>> {
        self.execute(inputs, symbols, outputs, false).map(|(outputs, _)| outputs)
    }

    /// Zeros every state buffer (forgets the KV cache).
    pub fn reset_states(&mut self) {
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        for (b, decl) in self.buffers.iter().zip(&self.manifest.buffers) {
            if decl.kind == BufferKind::State {
                encoder.clear_buffer(b, 0, None);
            }
        }
        self.gpu.queue.submit([encoder.finish()]);
    }

    /// Runs the graph like `run` and measures where the time goes. GPU times per dispatch need an adapter with
    /// timestamp queries inside passes; without one, `dispatch_ms` is empty.
    pub fn profile(&mut self, inputs: &BTreeMap<String, Tensor>) -> Result<(Vec<(String, Tensor)>, Profile)> {
        let fresh = self.fresh_sequence();
        self.profile_with(inputs, &fresh, &[])
    }

    /// `profile` with symbols and outputs chosen as in `run_with` (e.g. one decoding step after `past` tokens).
    pub fn profile_with(&mut self, inputs: &BTreeMap<String, Tensor>, symbols: &Env, outputs: &[&str]) -> Result<(Vec<(String, Tensor)>, Profile)> {
        self.execute(inputs, symbols, outputs, true).map(|(outputs, profile)| (outputs, profile.expect("profiling was asked for")))
    }

    fn execute(
        &mut self,
        inputs: &BTreeMap<String, Tensor>,
        symbols: &Env,
        wanted: &[&str],
        profiling: bool,
    ) -> Result<(Vec<(String, Tensor)>, Option<Profile>)> {
        let started = Instant::now();
        let mut selected = Vec::new();
        for (i, out) in self.manifest.outputs.iter().enumerate() {
            if wanted.is_empty() || wanted.contains(&out.name.as_str()) {
                selected.push(i);
            }
        }
        if selected.len() < wanted.len() {
            let known: Vec<&str> = self.manifest.outputs.iter().map(|o| o.name.as_str()).collect();
            return Err(RuntimeError::Input(format!("asked for outputs {wanted:?}; the model's outputs are {}", known.join(", "))));
        }
        for name in inputs.keys() {
            if !self.manifest.inputs.iter().any(|i| &i.name == name) {
                let known: Vec<&str> = self.manifest.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(RuntimeError::Input(format!("the model has no input `{name}` (its inputs: {})", known.join(", "))));
            }
        }
        let given: Vec<_> = self.manifest.inputs.iter().filter(|i| inputs.contains_key(&i.name)).collect();
        let env = bind_symbols(
            given.iter().map(|i| (i.name.as_str(), i.shape.as_slice(), inputs[&i.name].shape.as_slice())),
            symbols,
            &self.manifest.symbol_max(),
        )
        .map_err(RuntimeError::Input)?;
        self.check_context(&env)?;
        let mut values = Vec::new();
        for decl in &self.manifest.inputs {
            let shape = eval_shape(&decl.shape, &env)?;
            let value = match (inputs.get(&decl.name), decl.default) {
                (Some(t), _) => t.clone(),
                (None, Some(d)) => tfc_ir::default_input(d, decl.dtype, &shape, &env),
                (None, None) => return Err(RuntimeError::Input(format!("input `{}` is required", decl.name))),
            };
            values.push((decl.buffer, to_bytes(&decl.name, &value, decl.dtype)?));
        }

        if self.last.as_ref().is_none_or(|(last, _)| *last != env) {
            let workgroups = self.write_params(&env)?;
            self.last = Some((env.clone(), workgroups));
        }
        let workgroups = &self.last.as_ref().unwrap().1;
        let (device, queue) = (&self.gpu.device, &self.gpu.queue);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        for (buffer, bytes) in &values {
            if !bytes.is_empty() {
                queue.write_buffer(&self.buffers[*buffer], 0, bytes);
            }
        }
        let n = self.manifest.dispatches.len();
        let timestamps = (profiling && device.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)).then(|| {
            let set = device.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count: n as u32 + 1 });
            let buffer = |usage| device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 8 * (n as u64 + 1), usage, mapped_at_creation: false });
            let resolved = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
            let readback = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
            (set, resolved, readback)
        });
        // The dispatches go to the GPU in batches, each submitted as soon as it is recorded, so that the GPU runs
        // the first while the host records the rest.
        let mut encoder = device.create_command_encoder(&Default::default());
        let mut pass = encoder.begin_compute_pass(&Default::default()).forget_lifetime();
        if let Some((set, _, _)) = &timestamps {
            pass.write_timestamp(set, 0);
        }
        for (i, d) in self.manifest.dispatches.iter().enumerate() {
            let (x, y) = workgroups[i];
            if x > 0 && d.needed_by.iter().any(|o| selected.contains(o)) {
                pass.set_pipeline(&self.pipelines[d.shader]);
                pass.set_bind_group(0, &self.bind_groups[i], &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
            if let Some((set, _, _)) = &timestamps {
                pass.write_timestamp(set, i as u32 + 1);
            }
            if (i + 1) % DISPATCHES_PER_SUBMIT == 0 && i + 1 < n {
                drop(pass);
                queue.submit([encoder.finish()]);
                encoder = device.create_command_encoder(&Default::default());
                pass = encoder.begin_compute_pass(&Default::default()).forget_lifetime();
            }
        }
        drop(pass);
        if let Some((set, resolved, readback)) = &timestamps {
            encoder.resolve_query_set(set, 0..n as u32 + 1, resolved, 0);
            encoder.copy_buffer_to_buffer(resolved, 0, readback, 0, None);
        }
        let mut staging = Vec::new();
        for &i in &selected {
            let out = &self.manifest.outputs[i];
            let shape = eval_shape(&out.shape, &env)?;
            let bytes = (shape.iter().product::<usize>() * out.dtype.size()) as u64;
            let source = &self.buffers[out.buffer];
            let buffer = self.readback[i].get_or_insert_with(|| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&out.name),
                    size: source.size(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            let copied = bytes.div_ceil(4).max(1) * 4;
            encoder.copy_buffer_to_buffer(source, 0, buffer, 0, Some(copied));
            staging.push((out, shape, bytes, buffer.clone()));
        }
        queue.submit([encoder.finish()]);
        let submitted = Instant::now();
        let mapped = |bytes: u64| ..bytes.div_ceil(4).max(1) * 4;
        for (_, _, bytes, buffer) in &staging {
            buffer.slice(mapped(*bytes)).map_async(wgpu::MapMode::Read, |_| {});
        }
        if let Some((_, _, readback)) = &timestamps {
            readback.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        }
        let waited = device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| RuntimeError::Gpu(e.to_string()));
        let finished = Instant::now();
        // Read (where mapped) and unmap every readback buffer before any error returns, so the next run can use them.
        let mut outputs = Vec::new();
        for (out, shape, bytes, buffer) in staging {
            if let Ok(view) = buffer.get_mapped_range(mapped(bytes)) {
                let data = &view[..bytes as usize];
                let tensor = match out.dtype {
                    DType::I32 => Tensor::i32(shape, bytemuck::pod_collect_to_vec(data)),
                    _ => Tensor::f32(shape, bytemuck::pod_collect_to_vec(data)),
                };
                outputs.push((out.name.clone(), tensor));
            }
            buffer.unmap();
        }
        waited?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(RuntimeError::Gpu(e.to_string()));
        }
        if outputs.len() < selected.len() {
            return Err(RuntimeError::Gpu("an output could not be read back from the GPU".into()));
        }
        let profile = profiling.then(|| {
            let dispatch_ms = timestamps.map_or_else(Vec::new, |(_, _, readback)| {
                let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&readback.get_mapped_range(..).expect("mapped above"));
                let period_ms = queue.get_timestamp_period() as f64 * 1e-6;
                ticks.windows(2).map(|w| w[1].saturating_sub(w[0]) as f64 * period_ms).collect()
            });
            Profile {
                host_ms: (submitted - started).as_secs_f64() * 1e3,
                wait_ms: (finished - submitted).as_secs_f64() * 1e3,
                readback_ms: finished.elapsed().as_secs_f64() * 1e3,
                dispatch_ms,
            }
        });
        Ok((outputs, profile))
    }

    /// Writes every dispatch's params for the symbol values `env`; returns each dispatch's (x, y) workgroups.
    fn write_params(&self, env: &Env) -> Result<Vec<(u32, u32)>> {
        let mut bytes = vec![0u8; self.params.size() as usize];
        let mut workgroups = Vec::new();
        for (d, &offset) in self.manifest.dispatches.iter().zip(&self.params_offsets) {
            for (i, p) in d.params.iter().enumerate() {
                let v = eval(p, env)?;
                let v = u32::try_from(v)
                    .map_err(|_| RuntimeError::Input(format!("{}: a size ({v}) does not fit in 32 bits; use shorter inputs", d.node)))?;
                let at = offset as usize + 4 * i;
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            let total = eval(&d.workgroups, env)?;
            let x = total.min(MAX_WORKGROUPS_PER_DIM);
            let y = if x == 0 { 0 } else { total.div_ceil(x) };
            if y > MAX_WORKGROUPS_PER_DIM {
                return Err(RuntimeError::Limits(format!("{}: {total} workgroups are more than a dispatch can hold", d.node)));
            }
            workgroups.push((x as u32, y as u32));
        }
        self.gpu.queue.write_buffer(&self.params, 0, &bytes);
        Ok(workgroups)
    }
}

/// Bytes of a dispatch's params uniform: whole vec4s, at least one.
fn params_bytes(count: usize) -> u64 {
    (count.div_ceil(4).max(1) * 16) as u64
}

/// Every buffer of the manifest: weights at their size, the others at their size for the symbols' maxima.
fn allocate_buffers(manifest: &Manifest, device: &wgpu::Device) -> Result<Vec<wgpu::Buffer>> {
    let at_max: Env = manifest.symbol_max().into_iter().collect();
    let max_binding = device.limits().max_storage_buffer_binding_size;
    manifest
        .buffers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let size = eval(&b.size, &at_max)?.div_ceil(4).max(1) * 4;
            if size > max_binding {
                return Err(RuntimeError::Limits(format!(
                    "buffer {i} needs {size} bytes, more than this device's maxStorageBufferBindingSize ({max_binding})"
                )));
            }
            Ok(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&format!("{:?} buffer {i}", b.kind)),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }))
        })
        .collect()
}

/// `operands` read-only storage buffers, then the read-write output, then the params uniform.
fn bind_group_layout(device: &wgpu::Device, bindings: usize) -> wgpu::BindGroupLayout {
    let storage = |binding: usize, read_only: bool| wgpu::BindGroupLayoutEntry {
        binding: binding as u32,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let mut entries: Vec<_> = (0..bindings).map(|i| storage(i, i + 1 < bindings)).collect();
    entries.push(wgpu::BindGroupLayoutEntry {
        binding: bindings as u32,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    });
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries })
}

/// Fills the weight buffers chunk by chunk, so at most one chunk is in host memory at a time.
fn upload_weights(bundle: &Bundle, gpu: &Gpu, buffers: &[wgpu::Buffer]) -> Result<()> {
    let m = &bundle.manifest;
    // (destination buffer, offset in it) of every piece, grouped by chunk.
    let mut by_chunk: Vec<Vec<(usize, u64, &tfc_ir::manifest::Piece)>> = vec![Vec::new(); m.chunks.len()];
    for w in &m.weights {
        let mut at = 0;
        for piece in &w.pieces {
            by_chunk[piece.chunk].push((w.buffer, at, piece));
            at += piece.size;
        }
    }
    for (chunk, pieces) in by_chunk.iter().enumerate() {
        if pieces.is_empty() {
            continue;
        }
        let bytes = bundle.read_chunk(chunk)?;
        for (buffer, at, piece) in pieces {
            let range = piece.offset as usize..(piece.offset + piece.size) as usize;
            let data = bytes.get(range).ok_or_else(|| RuntimeError::Bundle {
                path: m.chunks[chunk].file.clone(),
                message: format!("a piece at {}+{} runs past the chunk's end", piece.offset, piece.size),
            })?;
            gpu.queue.write_buffer(&buffers[*buffer], *at, data);
        }
        // Let the queue take the chunk's data before reading the next one.
        gpu.queue.submit([]);
    }
    Ok(())
}

fn eval(e: &Expr, env: &Env) -> Result<u64> {
    e.eval(env).map_err(|m| RuntimeError::Input(format!("cannot evaluate `{e}`: {m}")))
}

fn eval_shape(shape: &[Expr], env: &Env) -> Result<Vec<usize>> {
    shape.iter().map(|d| eval(d, env).map(|v| v as usize)).collect()
}

/// The little-endian bytes of `value` as the input's storage type.
fn to_bytes(name: &str, value: &Tensor, dtype: DType) -> Result<Vec<u8>> {
    match dtype {
        DType::I32 => {
            let mut out = Vec::with_capacity(value.numel() * 4);
            for v in value.to_i64() {
                let v = i32::try_from(v).map_err(|_| RuntimeError::Input(format!("input `{name}`: {v} does not fit in i32")))?;
                out.extend_from_slice(&v.to_le_bytes());
            }
            Ok(out)
        }
        DType::F32 => Ok(value.to_f32().iter().flat_map(|v| v.to_le_bytes()).collect()),
        other => Err(RuntimeError::Input(format!("input `{name}` has storage type {other}, which this runtime cannot feed"))),
    }
}
