//! What every kernel shares: the node it is generated for (for errors), the bindings with one accessor per operand,
//! the params uniform, the math helpers a kernel asks for, and the entry point with its linear workgroup index.

use crate::math::Helper;
use crate::{CodegenError, Kernel};
use std::fmt::Write;
use tfc_ir::{DType, Dim, Expr, Op, TensorType};

/// The node a kernel is generated for: its op and the types of its operands and output.
pub(crate) struct Node<'a> {
    pub name: &'a str,
    pub op: &'a Op,
    pub inputs: Vec<&'a TensorType>,
    pub output: &'a TensorType,
}

impl Node<'_> {
    pub fn error(&self, message: impl Into<String>) -> CodegenError {
        CodegenError::Unsupported { node: self.name.to_string(), op: self.op.kind(), message: message.into() }
    }

    /// A dimension the kernel needs as a constant (baked into the text), or an error naming what it is.
    pub fn constant(&self, dim: &Dim, what: &str, max: u64) -> Result<u32, CodegenError> {
        match dim.as_const() {
            Some(v) if v <= max => Ok(v as u32),
            Some(v) => Err(self.error(format!("{what} is {v}; this kernel supports at most {max}"))),
            None => Err(self.error(format!("{what} is `{dim}`; this kernel needs it to be a constant"))),
        }
    }

    /// An f32 attribute as a WGSL literal that parses back to exactly the same value.
    pub fn literal(&self, value: f32, what: &str) -> Result<String, CodegenError> {
        if !value.is_finite() {
            return Err(self.error(format!("{what} is {value}; kernels need a finite value")));
        }
        Ok(format!("{value:?}f"))
    }
}

/// How a kernel reads an operand's elements; each (dtype, access) pair has one generated accessor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// As f32: f16 and bf16 are decoded, i32 converted.
    Float,
    /// As i32 (integer operands; a float truncates toward zero, as the interpreter's `to_i64`).
    Int,
    /// Unchanged, for kernels that only move elements: f32 and i32 as themselves, f16 and bf16 as their 16 bits.
    Copy,
}

/// The WGSL array element a tensor of this dtype is stored as.
pub(crate) fn storage_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::I32 => "i32",
        _ => "u32",
    }
}

/// Whether the dtype packs two elements into each u32 word.
pub(crate) fn is_packed(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
}

/// The WGSL type an accessor returns.
pub(crate) fn value_type(dtype: DType, access: Access) -> &'static str {
    match access {
        Access::Float => "f32",
        Access::Int => "i32",
        Access::Copy => storage_type(dtype),
    }
}

/// An operand's binding `inN` as the kernel text reads it: `array<T>` of its storage type, or in quads,
/// `array<vec4<T>>`, so that a kernel can load 16 bytes at once (the operand's size is then a multiple of 16 bytes).
pub(crate) struct Binding {
    pub var: String,
    pub quads: bool,
}

impl Binding {
    /// Storage element `i` (a WGSL u32 expression): a word of a packed or block-quantized operand.
    pub fn word(&self, i: &str) -> String {
        if self.quads { format!("{}[({i}) >> 2u][({i}) & 3u]", self.var) } else { format!("{}[{i}]", self.var) }
    }
}

/// The body of `load_inN(i)` for element `i` of the operand bound as `binding`; `row_len` is the length of the
/// operand's last axis (block formats are decoded row by row).
fn accessor(binding: &Binding, dtype: DType, access: Access, row_len: u32) -> String {
    let element = binding.word("i");
    let word = binding.word("i >> 1u");
    let float = match dtype {
        DType::F32 => element.clone(),
        DType::I32 => format!("f32({element})"),
        DType::F16 => format!("unpack2x16float({word})[i & 1u]"),
        // bf16 is the high half of an f32: shift the low element up, mask the high one in place.
        DType::BF16 => format!("bitcast<f32>(select({word} << 16u, {word} & 0xffff0000u, (i & 1u) == 1u))"),
        DType::I64 => unreachable!("i64 operands are rejected before code generation"),
        _block => crate::quant::element(&binding.var, row_len),
    };
    match (access, dtype) {
        (Access::Float, _) => float,
        (Access::Int | Access::Copy, DType::I32) | (Access::Copy, DType::F32) => element,
        (Access::Int, _) => format!("i32({float})"),
        (Access::Copy, _) => format!("({word} >> ((i & 1u) * 16u)) & 0xffffu"),
    }
}

/// Everything a kernel module produces; `build` wraps it into a complete, validated WGSL module.
pub(crate) struct Parts {
    pub name: String,
    /// One line of the header comment: what the kernel computes and how it is laid out.
    pub summary: String,
    pub inputs: Vec<(DType, Access)>,
    /// The operands bound in quads (see [`Binding`]).
    pub quads: Vec<usize>,
    pub output: DType,
    pub params: Vec<Expr>,
    pub helpers: Vec<Helper>,
    /// Module-scope declarations (constants, workgroup memory, functions).
    pub decls: String,
    /// The statements of `main`; `group` (the linear workgroup index) and `lid` (the local invocation index) are in scope.
    pub body: String,
    pub workgroup_size: u32,
    pub workgroups: Expr,
}

impl Parts {
    pub fn new(name: impl Into<String>, workgroup_size: u32) -> Parts {
        Parts {
            name: name.into(),
            summary: String::new(),
            inputs: Vec::new(),
            quads: Vec::new(),
            output: DType::F32,
            params: Vec::new(),
            helpers: Vec::new(),
            decls: String::new(),
            body: String::new(),
            workgroup_size,
            workgroups: Expr::Const(0),
        }
    }

    /// Appends a param and returns its index, for `param(index)` in the text.
    pub fn param(&mut self, value: Expr) -> usize {
        self.params.push(value);
        self.params.len() - 1
    }

    /// The module text, validated; `operands` are the types of the node's operands, in binding order.
    pub fn build(self, operands: &[&TensorType]) -> Result<Kernel, CodegenError> {
        assert!(self.workgroup_size <= 256, "workgroup size {} exceeds WebGPU's default limit", self.workgroup_size);
        let mut s = String::new();
        let inputs: Vec<String> = self.inputs.iter().map(|&(d, _)| d.name().to_string()).collect();
        writeln!(s, "// tfc kernel `{}` ({} -> {}): {}", self.name, inputs.join(", "), self.output, self.summary)
            .unwrap();
        let words = self.params.len().div_ceil(4).max(1);
        writeln!(s, "\nstruct Params {{\n    v: array<vec4<u32>, {words}>,\n}}\n").unwrap();
        let bindings: Vec<Binding> = (0..self.inputs.len()).map(|i| Binding { var: format!("in{i}"), quads: self.quads.contains(&i) }).collect();
        for (i, &(dtype, _)) in self.inputs.iter().enumerate() {
            let element = if bindings[i].quads { format!("vec4<{}>", storage_type(dtype)) } else { storage_type(dtype).to_string() };
            writeln!(s, "@group(0) @binding({i}) var<storage, read> in{i}: array<{element}>;").unwrap();
        }
        let n = self.inputs.len();
        writeln!(s, "@group(0) @binding({n}) var<storage, read_write> out: array<{}>;", storage_type(self.output))
            .unwrap();
        writeln!(s, "@group(0) @binding({}) var<uniform> params: Params;\n", n + 1).unwrap();
        s.push_str("fn param(i: u32) -> u32 {\n    return params.v[i / 4u][i % 4u];\n}\n");
        for (i, &(dtype, access)) in self.inputs.iter().enumerate() {
            let ty = value_type(dtype, access);
            let row_len = operands[i].shape.last().and_then(Dim::as_const).unwrap_or(1) as u32;
            if dtype.is_block() {
                s.push_str(&crate::quant::decoder(&bindings[i], dtype, row_len));
            }
            let body = accessor(&bindings[i], dtype, access, row_len);
            writeln!(s, "\nfn load_in{i}(i: u32) -> {ty} {{\n    return {body};\n}}").unwrap();
        }
        for helper in crate::math::with_dependencies(&self.helpers) {
            write!(s, "\n{}", helper.source()).unwrap();
        }
        if !self.decls.is_empty() {
            write!(s, "\n{}", self.decls).unwrap();
        }
        writeln!(
            s,
            "\n@compute @workgroup_size({})\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{\n    let group = wid.y * nwg.x + wid.x;\n{}}}",
            self.workgroup_size, self.body
        )
        .unwrap();
        crate::validate(&self.name, &s)?;
        Ok(Kernel {
            name: self.name,
            wgsl: s,
            entry_point: "main".to_string(),
            workgroup_size: self.workgroup_size,
            params: self.params,
            workgroups: self.workgroups,
        })
    }
}

pub(crate) fn expr(dim: &Dim) -> Expr {
    dim.to_expr()
}

pub(crate) fn product(dims: &[Dim]) -> Expr {
    tfc_ir::dim::product(dims).to_expr()
}

/// 1 if `x ≤ limit`, else 0: ⌈(max(limit + 1, x) − x) / (limit + 1)⌉, since expressions have no comparisons.
pub(crate) fn at_most(x: Expr, limit: u64) -> Expr {
    let above = Expr::Const(limit + 1);
    let gap = Expr::Sub(Box::new(Expr::max(vec![above.clone(), x.clone()])), Box::new(x));
    Expr::ceil_div(gap, above)
}

/// Workgroups for one invocation per item.
pub(crate) fn groups_for(items: Expr, workgroup_size: u32) -> Expr {
    Expr::ceil_div(items, Expr::Const(workgroup_size as u64))
}

