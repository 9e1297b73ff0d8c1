use crate::{Result, RuntimeError};
use tfc_ir::manifest::Requirements;

/// A wgpu device opened with the limits a bundle needs.
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
}

/// The WebGPU limit names a manifest may list, with their wgpu fields.
fn limit_field<'a>(limits: &'a mut wgpu::Limits, name: &str) -> Option<LimitRef<'a>> {
    Some(match name {
        "maxStorageBufferBindingSize" => LimitRef::U64(&mut limits.max_storage_buffer_binding_size),
        "maxBufferSize" => LimitRef::U64(&mut limits.max_buffer_size),
        "maxComputeWorkgroupStorageSize" => LimitRef::U32(&mut limits.max_compute_workgroup_storage_size),
        "maxComputeInvocationsPerWorkgroup" => LimitRef::U32(&mut limits.max_compute_invocations_per_workgroup),
        "maxComputeWorkgroupSizeX" => LimitRef::U32(&mut limits.max_compute_workgroup_size_x),
        "maxStorageBuffersPerShaderStage" => LimitRef::U32(&mut limits.max_storage_buffers_per_shader_stage),
        _ => return None,
    })
}

enum LimitRef<'a> {
    U32(&'a mut u32),
    U64(&'a mut u64),
}

impl LimitRef<'_> {
    fn get(&self) -> u64 {
        match self {
            LimitRef::U32(v) => **v as u64,
            LimitRef::U64(v) => **v,
        }
    }
    fn raise_to(&mut self, value: u64) {
        match self {
            LimitRef::U32(v) => **v = (**v).max(value as u32),
            LimitRef::U64(v) => **v = (**v).max(value),
        }
    }
}

impl Gpu {
    /// Opens the highest-performance adapter (set `WGPU_ADAPTER_NAME` / `WGPU_BACKEND` to choose another) with the
    /// WebGPU default limits raised to what `needs` asks for, or says which needs the adapter can't meet.
    pub fn new(needs: &Requirements) -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let options = wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() };
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(_) => pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(&instance, None)),
            Err(_) => pollster::block_on(instance.request_adapter(&options)),
        }
        .map_err(|e| RuntimeError::NoAdapter(format!("{e} (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)")))?;
        let info = adapter.get_info();
        let mut available = adapter.limits();
        let mut limits = wgpu::Limits::default();
        let mut missing = Vec::new();
        for (name, &value) in &needs.limits {
            let have = limit_field(&mut available, name).map(|l| l.get());
            match (limit_field(&mut limits, name), have) {
                (Some(mut field), Some(have)) if have >= value => field.raise_to(value),
                (Some(_), Some(have)) => missing.push(format!("{name} {value} (the adapter has {have})")),
                _ => missing.push(format!("unknown limit {name}")),
            }
        }
        // Timestamps inside passes only serve `Session::profile`; a bundle never depends on them.
        let timestamps = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        let features = adapter.features() & timestamps;
        for f in &needs.features {
            missing.push(format!("feature {f} (this runtime enables none)"));
        }
        if !missing.is_empty() {
            return Err(RuntimeError::Limits(format!("{} needs {}", info.name, missing.join(", "))));
        }
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("tfc"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| RuntimeError::Gpu(format!("could not open {}: {e}", info.name)))?;
        Ok(Gpu { device, queue, info })
    }
}
