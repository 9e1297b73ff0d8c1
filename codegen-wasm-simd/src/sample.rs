//! Drawing the next token from logits: the rule of `tfc_ir::interp::sample`, step for step in f32 (the repeat
//! penalty, the largest logit, weights exp((logit − max) / temperature), the min-p, top-k and top-p thresholds by
//! bisection, then the first token whose running weight passes u · Σ kept weights). One element at a time: the op
//! runs once per generated token, and the passes over the vocabulary keep the interpreter's order of additions.
//! Threads take runs of rows. Params: the row count, the vocabulary size V, the number of penalized ids.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};
use tfc_ir::interp::SAMPLE_SEARCH_STEPS;

/// The settings operand's fields, by position.
const TEMPERATURE: u32 = 0;
const TOP_K: u32 = 1;
const TOP_P: u32 = 2;
const MIN_P: u32 = 3;
const REPEAT_PENALTY: u32 = 4;

/// Locals every pass over a row uses.
struct Row {
    formats: [Format; 4],
    logits: Local,
    penalized: Local,
    penalized_count: Local,
    penalty: Local,
    penalty_on: Local,
    max: Local,
    temperature: Local,
    v: Local,
}

impl Row {
    /// Pushes logit `i` of the row at element `first`, with the repeat penalty applied to penalized ids.
    fn logit(&self, b: &mut Body, first: Local, i: Local) {
        let (at, lo, hi, mid, value) = (b.i32(), b.i32(), b.i32(), b.i32(), b.f32());
        b.get(first).get(i).op(I::I32Add).set(at);
        self.formats[0].address(b, self.logits, at);
        self.formats[0].load1(b);
        b.set(value);
        b.get(self.penalty_on).if_(|b| {
            // Binary search of the sorted ids for i.
            b.i32c(0).set(lo).get(self.penalized_count).set(hi);
            b.while_(
                |b| {
                    b.get(lo).get(hi).op(I::I32LtU);
                },
                |b| {
                    b.get(lo).get(hi).op(I::I32Add).i32c(1).op(I::I32ShrU).set(mid);
                    self.formats[3].address(b, self.penalized, mid);
                    self.formats[3].load1_i32(b);
                    b.get(i).op(I::I32LtS).if_else(
                        |b| {
                            b.get(mid).i32c(1).op(I::I32Add).set(lo);
                        },
                        |b| {
                            b.get(mid).set(hi);
                        },
                    );
                },
            );
            b.get(lo).get(self.penalized_count).op(I::I32LtU).if_(|b| {
                self.formats[3].address(b, self.penalized, lo);
                self.formats[3].load1_i32(b);
                b.get(i).op(I::I32Eq).if_(|b| {
                    b.get(value).get(self.penalty).op(I::F32Div);
                    b.get(value).get(self.penalty).op(I::F32Mul);
                    b.get(value).f32c(0.0).op(I::F32Gt).op(I::Select).set(value);
                });
            });
        });
        b.get(value);
    }

    /// Pushes the weight exp((logit i − max) / temperature).
    fn weight(&self, b: &mut Body, first: Local, i: Local) {
        self.logit(b, first, i);
        b.get(self.max).op(I::F32Sub).get(self.temperature).op(I::F32Div).op(I::F32x4Splat);
        call(b, Helper::Exp);
        b.op(I::F32x4ExtractLane(0));
    }

    /// For i in 0..V: `body(b, w)` with w the weight of token i (an f32 local).
    fn for_each_weight(&self, b: &mut Body, first: Local, body: impl FnOnce(&mut Body, Local, Local)) {
        let (i, w) = (b.i32(), b.f32());
        b.for_range(i, |b| { b.i32c(0); }, self.v, 1, |b| {
            self.weight(b, first, i);
            b.set(w);
            body(b, i, w);
        });
    }

    /// Pushes Σ of the weights ≥ `threshold` (an f32 local), added in token order.
    fn kept_sum(&self, b: &mut Body, first: Local, threshold: Local) {
        let sum = b.f32();
        b.f32c(0.0).set(sum);
        self.for_each_weight(b, first, |b, _, w| {
            b.get(w).get(threshold).op(I::F32Ge).if_(|b| {
                b.get(sum).get(w).op(I::F32Add).set(sum);
            });
        });
        b.get(sum);
    }
}

/// Sets `result` to the largest threshold in [0, 1] for which `enough(b, t)` (an i32 condition) holds, by
/// bisection in SAMPLE_SEARCH_STEPS steps.
fn search(b: &mut Body, result: Local, enough: impl Fn(&mut Body, Local)) {
    let (lo, hi, mid, step) = (b.f32(), b.f32(), b.f32(), b.i32());
    let steps = b.let_i32(|b| {
        b.i32c(SAMPLE_SEARCH_STEPS as i32);
    });
    b.f32c(0.0).set(lo).f32c(1.0).set(hi);
    b.for_range(step, |b| { b.i32c(0); }, steps, 1, |b| {
        b.f32c(0.5).get(lo).get(hi).op(I::F32Add).op(I::F32Mul).set(mid);
        enough(b, mid);
        b.if_else(
            |b| {
                b.get(mid).set(lo);
            },
            |b| {
                b.get(mid).set(hi);
            },
        );
    });
    b.get(lo).set(result);
}

pub(crate) fn sample(node: &Node) -> Result<Kernel, CodegenError> {
    let formats = [node.format(0)?, node.format(1)?, node.format(2)?, node.format(3)?];
    let logits = &node.inputs[0].shape;
    let params = vec![
        tfc_ir::dim::product(&logits[..logits.len() - 1]).to_expr(),
        logits[logits.len() - 1].to_expr(),
        tfc_ir::dim::product(&node.inputs[3].shape).to_expr(),
    ];
    let (mut b, args) = Args::new(4);
    let (rows, v, penalized_count) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2));
    let setting = |b: &mut Body, index: u32| {
        b.get(args.input(1));
        formats[1].load1_at(b, index * formats[1].size());
    };
    let temperature = b.let_f32(|b| setting(b, TEMPERATURE));
    let penalty = b.let_f32(|b| setting(b, REPEAT_PENALTY));
    let penalty_on = b.let_i32(|b| {
        b.get(penalty).f32c(0.0).op(I::F32Gt).get(penalty).f32c(1.0).op(I::F32Ne).op(I::I32And);
    });
    let top_k = b.let_i32(|b| {
        setting(b, TOP_K);
        b.f32c(0.0).op(I::F32Max).op(I::I32TruncSatF32U);
    });
    let top_p = b.let_f32(|b| setting(b, TOP_P));
    let min_p = b.let_f32(|b| setting(b, MIN_P));
    let row = Row {
        formats,
        logits: args.input(0),
        penalized: args.input(3),
        penalized_count,
        penalty,
        penalty_on,
        max: b.f32(),
        temperature,
        v,
    };
    let (start, end) = args.share(&mut b, rows);
    let (r, first, i, best, pick, found) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (value, floor, threshold, total, target, running, count) = (b.f32(), b.f32(), b.f32(), b.f32(), b.f32(), b.f32(), b.i32());
    b.for_range(r, |b| { b.get(start); }, end, 1, |b| {
        b.get(r).get(v).op(I::I32Mul).set(first);
        // The largest (penalized) logit, the first on ties.
        b.i32c(0).set(best).f32c(f32::NEG_INFINITY).set(row.max);
        b.for_range(i, |b| { b.i32c(0); }, v, 1, |b| {
            row.logit(b, first, i);
            b.tee(value).get(row.max).op(I::F32Gt).if_(|b| {
                b.get(i).set(best).get(value).set(row.max);
            });
        });
        b.get(best).set(pick);
        b.get(temperature).f32c(0.0).op(I::F32Gt).if_(|b| {
            b.get(min_p).f32c(0.0).op(I::F32Max).set(floor);
            b.get(top_k).if_(|b| {
                search(b, threshold, |b, t| {
                    b.i32c(0).set(count);
                    row.for_each_weight(b, first, |b, _, w| {
                        b.get(w).get(t).op(I::F32Ge).if_(|b| {
                            b.add_to(count, 1);
                        });
                    });
                    b.get(count).get(top_k).op(I::I32GeU);
                });
                b.get(floor).get(threshold).op(I::F32Max).set(floor);
            });
            b.get(top_p).f32c(0.0).op(I::F32Gt).get(top_p).f32c(1.0).op(I::F32Lt).op(I::I32And).if_(|b| {
                row.kept_sum(b, first, floor);
                b.set(total);
                search(b, threshold, |b, t| {
                    let kept = b.let_f32(|b| {
                        b.get(t).get(floor).op(I::F32Max);
                    });
                    row.kept_sum(b, first, kept);
                    b.get(top_p).get(total).op(I::F32Mul).op(I::F32Ge);
                });
                b.get(floor).get(threshold).op(I::F32Max).set(floor);
            });
            // u · Σ kept weights, u being this row's uniform number.
            row.kept_sum(b, first, floor);
            formats[2].address(b, args.input(2), r);
            formats[2].load1(b);
            b.op(I::F32Mul).set(target);
            // The first token whose running sum of kept weights passes the target; the largest logit if rounding
            // leaves none.
            b.f32c(0.0).set(running).i32c(0).set(found);
            row.for_each_weight(b, first, |b, i, w| {
                b.get(found).op(I::I32Eqz).get(w).get(floor).op(I::F32Ge).op(I::I32And).if_(|b| {
                    b.get(running).get(w).op(I::F32Add).tee(running).get(target).op(I::F32Gt).if_(|b| {
                        b.get(i).set(pick).i32c(1).set(found);
                    });
                });
            });
        });
        Format::I32.address(b, args.output(), r);
        b.get(pick).i32_store(0);
    });
    Ok(Kernel { name: "sample".into(), body: b, bindings: 5, params })
}
