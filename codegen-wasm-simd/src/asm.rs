//! A small assembler over wasm-encoder for writing function bodies: locals are allocated as code asks for them,
//! structured control flow takes closures (so blocks always close), and memory accesses name their byte offset.

use wasm_encoder::{BlockType, Function, Ieee32, Instruction, MemArg, MemArgTarget, ValType};

pub(crate) use wasm_encoder::Instruction as I;

/// A local variable (or parameter) of the function being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Local(u32);

/// The body of one function: its parameters are locals 0..params.
pub(crate) struct Body {
    params: u32,
    locals: Vec<ValType>,
    code: Vec<Instruction<'static>>,
}

/// A memory access at `offset` bytes past the address on the stack, in memory 0.
pub(crate) fn mem(offset: u32, align: u32) -> MemArg {
    MemArg { offset: offset as u64, align, target: MemArgTarget::Memory(0), ordering: None }
}

/// The bits of an f32x4 constant with every lane `v`.
pub(crate) fn f32x4_bits(v: f32) -> i128 {
    i32x4_bits(v.to_bits() as i32)
}

pub(crate) fn i32x4_bits(v: i32) -> i128 {
    let lane = v as u32 as u128;
    (lane | lane << 32 | lane << 64 | lane << 96) as i128
}

impl Body {
    pub fn new(params: u32) -> Body {
        Body { params, locals: Vec::new(), code: Vec::new() }
    }

    pub fn param(&self, index: u32) -> Local {
        assert!(index < self.params, "parameter {index} of a function with {}", self.params);
        Local(index)
    }

    pub fn local(&mut self, ty: ValType) -> Local {
        self.locals.push(ty);
        Local(self.params + self.locals.len() as u32 - 1)
    }

    pub fn i32(&mut self) -> Local {
        self.local(ValType::I32)
    }

    pub fn f32(&mut self) -> Local {
        self.local(ValType::F32)
    }

    pub fn v128(&mut self) -> Local {
        self.local(ValType::V128)
    }

    pub fn op(&mut self, instruction: Instruction<'static>) -> &mut Body {
        self.code.push(instruction);
        self
    }

    pub fn get(&mut self, local: Local) -> &mut Body {
        self.op(I::LocalGet(local.0))
    }

    pub fn set(&mut self, local: Local) -> &mut Body {
        self.op(I::LocalSet(local.0))
    }

    pub fn tee(&mut self, local: Local) -> &mut Body {
        self.op(I::LocalTee(local.0))
    }

    pub fn i32c(&mut self, value: i32) -> &mut Body {
        self.op(I::I32Const(value))
    }

    pub fn u32c(&mut self, value: u32) -> &mut Body {
        self.op(I::I32Const(value as i32))
    }

    pub fn f32c(&mut self, value: f32) -> &mut Body {
        self.op(I::F32Const(Ieee32::from(value)))
    }

    /// An f32x4 with every lane `value`.
    pub fn splat(&mut self, value: f32) -> &mut Body {
        self.op(I::V128Const(f32x4_bits(value)))
    }

    /// An i32x4 with every lane `value`.
    pub fn splat_i32(&mut self, value: i32) -> &mut Body {
        self.op(I::V128Const(i32x4_bits(value)))
    }

    /// `local = value` for an i32 value computed by `value`.
    pub fn assign(&mut self, local: Local, value: impl FnOnce(&mut Body)) -> &mut Body {
        value(self);
        self.set(local)
    }

    /// A new i32 local holding the value `value` pushes.
    pub fn let_i32(&mut self, value: impl FnOnce(&mut Body)) -> Local {
        let l = self.i32();
        self.assign(l, value);
        l
    }

    pub fn let_f32(&mut self, value: impl FnOnce(&mut Body)) -> Local {
        let l = self.f32();
        self.assign(l, value);
        l
    }

    pub fn let_v128(&mut self, value: impl FnOnce(&mut Body)) -> Local {
        let l = self.v128();
        self.assign(l, value);
        l
    }

    /// `local += amount`.
    pub fn add_to(&mut self, local: Local, amount: i32) -> &mut Body {
        self.get(local).i32c(amount).op(I::I32Add).set(local)
    }

    /// `local += other`.
    pub fn add_local(&mut self, local: Local, other: Local) -> &mut Body {
        self.get(local).get(other).op(I::I32Add).set(local)
    }

    /// Pushes `a * b` for two i32 locals.
    pub fn mul(&mut self, a: Local, b: Local) -> &mut Body {
        self.get(a).get(b).op(I::I32Mul)
    }

    /// Pushes `min(a, b)` (unsigned) of the two i32 values on the stack.
    pub fn min_u(&mut self) -> &mut Body {
        let (a, b) = (self.i32(), self.i32());
        self.set(b).tee(a).get(b).get(a).get(b).op(I::I32LtU).op(I::Select)
    }

    /// Runs `body` if the i32 on the stack is nonzero.
    pub fn if_(&mut self, body: impl FnOnce(&mut Body)) -> &mut Body {
        self.op(I::If(BlockType::Empty));
        body(self);
        self.op(I::End)
    }

    pub fn if_else(&mut self, then: impl FnOnce(&mut Body), otherwise: impl FnOnce(&mut Body)) -> &mut Body {
        self.op(I::If(BlockType::Empty));
        then(self);
        self.op(I::Else);
        otherwise(self);
        self.op(I::End)
    }

    /// `for (var = start; var < end; var += step) body` with unsigned comparison; `start` pushes the first value.
    pub fn for_range(&mut self, var: Local, start: impl FnOnce(&mut Body), end: Local, step: i32, body: impl FnOnce(&mut Body)) -> &mut Body {
        start(self);
        self.set(var);
        self.while_(|b| {
            b.get(var).get(end).op(I::I32LtU);
        }, |b| {
            body(b);
            b.add_to(var, step);
        })
    }

    /// `while (condition) body`; `condition` pushes an i32.
    pub fn while_(&mut self, condition: impl FnOnce(&mut Body), body: impl FnOnce(&mut Body)) -> &mut Body {
        self.op(I::Block(BlockType::Empty));
        self.op(I::Loop(BlockType::Empty));
        condition(self);
        self.op(I::I32Eqz).op(I::BrIf(1));
        body(self);
        self.op(I::Br(0)).op(I::End).op(I::End)
    }

    pub fn i32_load(&mut self, offset: u32) -> &mut Body {
        self.op(I::I32Load(mem(offset, 2)))
    }

    pub fn i32_store(&mut self, offset: u32) -> &mut Body {
        self.op(I::I32Store(mem(offset, 2)))
    }

    pub fn f32_load(&mut self, offset: u32) -> &mut Body {
        self.op(I::F32Load(mem(offset, 2)))
    }

    pub fn f32_store(&mut self, offset: u32) -> &mut Body {
        self.op(I::F32Store(mem(offset, 2)))
    }

    pub fn v128_load(&mut self, offset: u32) -> &mut Body {
        self.op(I::V128Load(mem(offset, 0)))
    }

    pub fn v128_store(&mut self, offset: u32) -> &mut Body {
        self.op(I::V128Store(mem(offset, 0)))
    }

    /// Stores the first `count` (a local, 1 to 4) 32-bit lanes of the v128 on the stack at the address under it.
    pub fn store_lanes(&mut self, count: Local) -> &mut Body {
        let (address, value) = (self.i32(), self.v128());
        self.set(value).set(address);
        self.get(count).i32c(4).op(I::I32Eq).if_else(
            |b| {
                b.get(address).get(value).v128_store(0);
            },
            |b| {
                for lane in 0..3u8 {
                    b.get(count).i32c(lane as i32).op(I::I32GtU).if_(|b| {
                        b.get(address).get(value).op(I::V128Store32Lane { memarg: mem(4 * lane as u32, 0), lane });
                    });
                }
            },
        )
    }

    /// Sums the four f32 lanes of the v128 on the stack, as ((x0 + x2) + (x1 + x3)).
    pub fn hsum(&mut self) -> &mut Body {
        let v = self.v128();
        self.tee(v).get(v).get(v).op(I::I8x16Shuffle([8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7])).op(I::F32x4Add);
        self.tee(v).op(I::F32x4ExtractLane(0)).get(v).op(I::F32x4ExtractLane(1)).op(I::F32Add)
    }

    /// The largest of the four f32 lanes of the v128 on the stack.
    pub fn hmax(&mut self) -> &mut Body {
        let v = self.v128();
        self.tee(v).get(v).get(v).op(I::I8x16Shuffle([8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7])).op(I::F32x4Max);
        self.tee(v).op(I::F32x4ExtractLane(0)).get(v).op(I::F32x4ExtractLane(1)).op(I::F32Max)
    }

    /// The function, with its locals declared.
    pub fn finish(self) -> Function {
        let mut runs: Vec<(u32, ValType)> = Vec::new();
        for ty in self.locals {
            match runs.last_mut() {
                Some((n, t)) if *t == ty => *n += 1,
                _ => runs.push((1, ty)),
            }
        }
        let mut f = Function::new(runs);
        for i in &self.code {
            f.instruction(i);
        }
        f.instruction(&I::End);
        f
    }
}
