//! Where everything lies in the fallback's linear memory (docs/bundle-format.md, "WASM fallback"). The JS executor
//! lays memory out by the same rules; the compiler uses them to compute the memory a bundle needs.

use tfc_ir::manifest::BufferKind;

/// Bytes at address 0 reserved for the threads' barrier.
pub const CONTROL_BYTES: u64 = 64;
/// Every buffer and the params start at a multiple of this.
pub const ALIGN: u64 = 64;
/// Readable bytes after every buffer: kernels load the last vector of a row whole.
pub const SLACK: u64 = 16;
/// WebAssembly's page size.
pub const PAGE: u64 = 1 << 16;

/// Byte offsets of the buffers and of each dispatch's params, and the end of the used memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub buffers: Vec<u64>,
    pub params: Vec<u64>,
    pub end: u64,
}

/// The layout for buffers of the given kinds and sizes (in manifest order) and dispatches with the given numbers of
/// params. Weights come first, then states (both keep their place whatever the symbols are), then inputs and
/// activations, then the params.
pub fn layout(buffers: &[(BufferKind, u64)], params: &[usize]) -> Layout {
    let mut offsets = vec![0; buffers.len()];
    let mut at = CONTROL_BYTES;
    let place = |kind: BufferKind| match kind {
        BufferKind::Weight => 0,
        BufferKind::State => 1,
        BufferKind::Input | BufferKind::Activation => 2,
    };
    for group in 0..3 {
        for (i, &(kind, size)) in buffers.iter().enumerate() {
            if place(kind) == group {
                offsets[i] = at;
                at = (at + size + SLACK).next_multiple_of(ALIGN);
            }
        }
    }
    let mut params_at = Vec::with_capacity(params.len());
    for &count in params {
        params_at.push(at);
        at += 4 * count as u64;
    }
    Layout { buffers: offsets, params: params_at, end: at + SLACK }
}

/// The memory to allocate for a layout: its end rounded up to whole pages.
pub fn pages(layout: &Layout) -> u64 {
    layout.end.div_ceil(PAGE)
}
