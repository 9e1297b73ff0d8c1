//! RNN, GRU and LSTM, their recurrences unrolled over the (static) sequence: the input projections of all steps in one
//! MatMul per direction, then per step the hidden projection, the gates and the new state. Batch entries past their
//! `sequence_lens` keep their state and output zeros, so a reverse direction starts at each entry's own last step.

use super::*;

#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    /// Gates per cell (the row blocks of W and R), and the default activations (f, g, h).
    fn gates(self) -> u64 {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

/// The values that run through the steps of one direction.
struct State {
    h: Value,
    c: Option<Value>,
}

pub(super) fn recurrent(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let base = ctx.base();
    let cell = match ctx.node.op_type.as_str() {
        "RNN" => Cell::Rnn,
        "GRU" => Cell::Gru,
        _ => Cell::Lstm,
    };
    let opt = |i: usize| inputs.get(i).and_then(Option::as_ref);
    let hidden = ctx.int("hidden_size", 0);
    if hidden <= 0 {
        return Err("needs hidden_size".into());
    }
    let hidden = hidden as u64;
    let layout = ctx.int("layout", 0) != 0;
    let directions: &[bool] = match ctx.string("direction").as_deref().unwrap_or("forward") {
        "forward" => &[false],
        "reverse" => &[true],
        "bidirectional" => &[false, true],
        other => return Err(format!("direction {other:?} is not supported")),
    };
    if cell == Cell::Lstm && ctx.int("input_forget", 0) != 0 {
        return Err("input_forget = 1 is not supported".into());
    }
    let names: Vec<String> = match ctx.attr("activations") {
        Some(a) => a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
        None => directions.iter().flat_map(|_| cell.default_activations().iter().map(|s| s.to_string())).collect(),
    };
    let per_direction = cell.default_activations().len();
    if names.len() != per_direction * directions.len() {
        return Err(format!("{} activations for {} direction(s) of {per_direction}", names.len(), directions.len()));
    }
    let activations: Vec<UnaryOp> = names.iter().map(|n| activation(n)).collect::<Result<_, _>>()?;
    let clip = ctx.attr("clip").map(|a| a.f as f64);

    let d = |v: u64| Dim::from(v);
    let x = input(inputs, 0)?;
    // [T, B, I] (layout 1 gives [B, T, I])
    let x = if layout { transpose(b, &format!("{base}.x_tbi"), x, &[1, 0, 2])? } else { x.clone() };
    let xs = const_shape(b, &x)?;
    let [steps, batch, _] = xs[..] else { return Err("X must be [seq_length, batch_size, input_size]".into()) };
    let gates = cell.gates();
    // initial_h/initial_c: [directions, B, H] (layout 1: [B, directions, H]).
    let initial = |b: &mut Builder, i: usize, name: &str| -> Result<Option<Value>, String> {
        let Some(v) = opt(i) else { return Ok(None) };
        Ok(Some(if layout { transpose(b, &format!("{base}.{name}_dbh"), v, &[1, 0, 2])? } else { v.clone() }))
    };
    let (initial_h, initial_c) = (initial(b, 5, "initial_h")?, if cell == Cell::Lstm { initial(b, 6, "initial_c")? } else { None });
    let valid = match opt(4) {
        Some(lens) => Some(reshape(b, &format!("{base}.lens"), lens, vec![d(batch), d(1)])?),
        None => None,
    };
    let zeros = |n: u64| Value::Known(Known::new(Elem::FLOAT, vec![batch as usize, n as usize], Values::F32(vec![0.0; (batch * n) as usize])));

    let mut ys = Vec::new();
    let mut finals = Vec::new();
    for (di, &reverse) in directions.iter().enumerate() {
        let name = format!("{base}.dir{di}");
        let pick = |b: &mut Builder, v: &Value, rows: Vec<Dim>, what: &str| -> Result<Value, String> {
            let one = slice(b, &format!("{name}.{what}"), v, 0, &d(di as u64), &d(di as u64 + 1), 1)?;
            reshape(b, &format!("{name}.{what}_2d"), &one, rows)
        };
        let w = pick(b, input(inputs, 1)?, vec![d(gates * hidden), d(xs[2])], "w")?;
        let r = pick(b, input(inputs, 2)?, vec![d(gates * hidden), d(hidden)], "r")?;
        let (wb, rb) = match opt(3) {
            Some(bias) => {
                let bias = pick(b, bias, vec![d(2 * gates * hidden)], "bias")?;
                let half = |b: &mut Builder, i: u64, what: &str| slice(b, &format!("{name}.{what}"), &bias, 0, &d(i * gates * hidden), &d((i + 1) * gates * hidden), 1);
                (Some(half(b, 0, "wb")?), Some(half(b, 1, "rb")?))
            }
            None => (None, None),
        };
        let peepholes = match (cell, opt(7)) {
            (Cell::Lstm, Some(p)) => Some(pick(b, p, vec![d(3 * hidden)], "p")?),
            _ => None,
        };
        // Every step's input projection (and, except GRU's hidden gate with linear_before_reset, both biases): [T, B, G·H].
        let mut projected = matmul(b, &format!("{name}.xw"), &x, &w, false, true)?;
        if let Some(wb) = &wb {
            projected = binary(b, &format!("{name}.xw_wb"), BinaryOp::Add, &projected, wb)?;
        }
        let before_reset = cell == Cell::Gru && ctx.int("linear_before_reset", 0) != 0;
        let rb_hidden = match (&rb, before_reset) {
            (Some(rb), true) => Some(slice(b, &format!("{name}.rb_h"), rb, 0, &d(2 * hidden), &d(3 * hidden), 1)?),
            _ => None,
        };
        if let Some(rb) = &rb {
            let rb = match &rb_hidden {
                // GRU with linear_before_reset: the hidden gate's recurrent bias goes inside the reset.
                Some(_) => {
                    let zr = slice(b, &format!("{name}.rb_zr"), rb, 0, &d(0), &d(2 * hidden), 1)?;
                    let none = Value::Known(Known::new(Elem::FLOAT, vec![hidden as usize], Values::F32(vec![0.0; hidden as usize])));
                    concat(b, &format!("{name}.rb_outside"), &[&zr, &none], 0)?
                }
                None => rb.clone(),
            };
            projected = binary(b, &format!("{name}.xw_b"), BinaryOp::Add, &projected, &rb)?;
        }
        let f = &activations[di * per_direction..(di + 1) * per_direction];
        let pick_initial = |b: &mut Builder, v: &Option<Value>, what: &str| -> Result<Value, String> {
            match v {
                Some(v) => pick(b, v, vec![d(batch), d(hidden)], what),
                None => Ok(zeros(hidden)),
            }
        };
        let mut state = State { h: pick_initial(b, &initial_h, "h0")?, c: if cell == Cell::Lstm { Some(pick_initial(b, &initial_c, "c0")?) } else { None } };
        let order: Vec<u64> = if reverse { (0..steps).rev().collect() } else { (0..steps).collect() };
        let mut outputs: Vec<Option<Value>> = vec![None; steps as usize];
        for t in order {
            let step = format!("{name}.t{t}");
            let xw = slice(b, &format!("{step}.xw"), &projected, 0, &d(t), &d(t + 1), 1)?;
            let xw = reshape(b, &format!("{step}.xw_2d"), &xw, vec![d(batch), d(gates * hidden)])?;
            let hr = matmul(b, &format!("{step}.hr"), &state.h, &r, false, true)?;
            let gate = |b: &mut Builder, v: &Value, i: u64, what: &str| slice(b, &format!("{step}.{what}"), v, 1, &d(i * hidden), &d((i + 1) * hidden), 1);
            let act = |b: &mut Builder, v: &Value, op: UnaryOp, what: &str| -> Result<Value, String> {
                let v = match clip {
                    Some(c) => {
                        let lo = binary(b, &format!("{step}.{what}_lo"), BinaryOp::Max, v, &scalar(Elem::FLOAT, -c))?;
                        binary(b, &format!("{step}.{what}_clip"), BinaryOp::Min, &lo, &scalar(Elem::FLOAT, c))?
                    }
                    None => v.clone(),
                };
                unary_named(b, &format!("{step}.{what}"), &v, op)
            };
            let next = match cell {
                Cell::Rnn => {
                    let sum = binary(b, &format!("{step}.sum"), BinaryOp::Add, &xw, &hr)?;
                    State { h: act(b, &sum, f[0], "h")?, c: None }
                }
                Cell::Gru => {
                    let zr_x = slice(b, &format!("{step}.zr_x"), &xw, 1, &d(0), &d(2 * hidden), 1)?;
                    let zr_h = slice(b, &format!("{step}.zr_h"), &hr, 1, &d(0), &d(2 * hidden), 1)?;
                    let zr = binary(b, &format!("{step}.zr_sum"), BinaryOp::Add, &zr_x, &zr_h)?;
                    let zr = act(b, &zr, f[0], "zr")?;
                    let (z, rg) = (gate(b, &zr, 0, "z")?, gate(b, &zr, 1, "r")?);
                    let h_x = gate(b, &xw, 2, "h_x")?;
                    let h_h = if before_reset {
                        // r ⊙ (H·Rhᵀ + Rbh)
                        let mut lin = gate(b, &hr, 2, "h_lin")?;
                        if let Some(rbh) = &rb_hidden {
                            lin = binary(b, &format!("{step}.h_lin_b"), BinaryOp::Add, &lin, rbh)?;
                        }
                        binary(b, &format!("{step}.h_reset"), BinaryOp::Mul, &rg, &lin)?
                    } else {
                        // (r ⊙ H)·Rhᵀ
                        let reset = binary(b, &format!("{step}.reset"), BinaryOp::Mul, &rg, &state.h)?;
                        let rh = slice(b, &format!("{step}.rh"), &r, 0, &d(2 * hidden), &d(3 * hidden), 1)?;
                        matmul(b, &format!("{step}.h_reset"), &reset, &rh, false, true)?
                    };
                    let candidate = binary(b, &format!("{step}.h_sum"), BinaryOp::Add, &h_x, &h_h)?;
                    let candidate = act(b, &candidate, f[1], "candidate")?;
                    // (1 − z) ⊙ h̃ + z ⊙ H = h̃ + z ⊙ (H − h̃)
                    let diff = binary(b, &format!("{step}.keep"), BinaryOp::Sub, &state.h, &candidate)?;
                    let kept = binary(b, &format!("{step}.kept"), BinaryOp::Mul, &z, &diff)?;
                    State { h: binary(b, &format!("{step}.h"), BinaryOp::Add, &candidate, &kept)?, c: None }
                }
                Cell::Lstm => {
                    let c_prev = state.c.clone().expect("an LSTM state has a cell");
                    let sum = binary(b, &format!("{step}.sum"), BinaryOp::Add, &xw, &hr)?;
                    // Gates in the order i, o, f, c; peepholes p_i, p_o, p_f.
                    let peep = |b: &mut Builder, v: Value, k: u64, c: &Value, what: &str| -> Result<Value, String> {
                        let Some(p) = &peepholes else { return Ok(v) };
                        let p = slice(b, &format!("{step}.p{what}"), p, 0, &d(k * hidden), &d((k + 1) * hidden), 1)?;
                        let pc = binary(b, &format!("{step}.p{what}_c"), BinaryOp::Mul, &p, c)?;
                        binary(b, &format!("{step}.{what}_peep"), BinaryOp::Add, &v, &pc)
                    };
                    let i_in = gate(b, &sum, 0, "i_in")?;
                    let i_in = peep(b, i_in, 0, &c_prev, "i")?;
                    let i = act(b, &i_in, f[0], "i")?;
                    let f_in = gate(b, &sum, 2, "f_in")?;
                    let f_in = peep(b, f_in, 2, &c_prev, "f")?;
                    let fg = act(b, &f_in, f[0], "f")?;
                    let c_in = gate(b, &sum, 3, "c_in")?;
                    let candidate = act(b, &c_in, f[1], "candidate")?;
                    let kept = binary(b, &format!("{step}.c_kept"), BinaryOp::Mul, &fg, &c_prev)?;
                    let added = binary(b, &format!("{step}.c_added"), BinaryOp::Mul, &i, &candidate)?;
                    let c = binary(b, &format!("{step}.c"), BinaryOp::Add, &kept, &added)?;
                    let o_in = gate(b, &sum, 1, "o_in")?;
                    let o_in = peep(b, o_in, 1, &c, "o")?;
                    let o = act(b, &o_in, f[0], "o")?;
                    let hc = act(b, &c, f[2], "hc")?;
                    State { h: binary(b, &format!("{step}.h"), BinaryOp::Mul, &o, &hc)?, c: Some(c) }
                }
            };
            // Entries past their length keep their state and output zeros.
            let (next, out) = match &valid {
                Some(lens) => {
                    let live = compare(b, &format!("{step}.live"), CompareOp::Lt, &scalar(Elem::INT64, t as f64), lens)?;
                    let h = where_(b, &format!("{step}.h_live"), &live, &next.h, &state.h)?;
                    let c = match (&next.c, &state.c) {
                        (Some(new), Some(old)) => Some(where_(b, &format!("{step}.c_live"), &live, new, old)?),
                        _ => None,
                    };
                    let out = where_(b, &format!("{step}.y"), &live, &next.h, &scalar(Elem::FLOAT, 0.0))?;
                    (State { h, c }, out)
                }
                None => (State { h: next.h.clone(), c: next.c.clone() }, next.h),
            };
            outputs[t as usize] = Some(reshape(b, &format!("{step}.y_row"), &out, vec![d(1), d(1), d(batch), d(hidden)])?);
            state = next;
        }
        let rows: Vec<&Value> = outputs.iter().flatten().collect();
        ys.push(concat(b, &format!("{name}.y"), &rows, 0)?);
        finals.push(state);
    }
    // Y [T, directions, B, H], Y_h and Y_c [directions, B, H]; layout 1: [B, T, directions, H] and [B, directions, H].
    let y_parts: Vec<&Value> = ys.iter().collect();
    let y = concat(b, &format!("{base}.y_tdbh"), &y_parts, 1)?;
    let last = |b: &mut Builder, vs: Vec<Value>, what: &str| -> Result<Value, String> {
        let rows: Vec<Value> = vs.iter().enumerate().map(|(i, v)| reshape(b, &format!("{base}.{what}{i}"), v, vec![d(1), d(batch), d(hidden)])).collect::<Result<_, _>>()?;
        let all = concat(b, &format!("{base}.{what}_dbh"), &rows.iter().collect::<Vec<_>>(), 0)?;
        if layout { transpose(b, &format!("{base}.{what}"), &all, &[1, 0, 2]) } else { Ok(all) }
    };
    let y = if layout { transpose(b, &format!("{base}.y"), &y, &[2, 0, 1, 3])? } else { y };
    let y_h = last(b, finals.iter().map(|s| s.h.clone()).collect(), "y_h")?;
    let mut outputs = vec![y, y_h];
    if cell == Cell::Lstm {
        outputs.push(last(b, finals.into_iter().map(|s| s.c.expect("an LSTM state has a cell")).collect(), "y_c")?);
    }
    Ok(outputs)
}

/// The activations of the recurrent ops tfc supports (those without alpha/beta).
fn activation(name: &str) -> Result<UnaryOp, String> {
    Ok(match name {
        "Sigmoid" => UnaryOp::Sigmoid,
        "Tanh" => UnaryOp::Tanh,
        "Relu" => UnaryOp::Relu,
        "Softplus" => UnaryOp::Softplus,
        other => return Err(format!("the activation {other:?} is not supported (Sigmoid, Tanh, Relu, Softplus)")),
    })
}
