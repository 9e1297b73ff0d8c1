//! If, Loop and Scan, their bodies lowered in place: If's branch chosen by a known condition, Loop's and Scan's
//! bodies once per iteration (unrolled), so their iterations must be known at compile time.

use super::*;
use crate::onnx::proto::GraphProto;

/// The most iterations a Loop or Scan is unrolled to (a guard against a loop that never ends).
const MAX_ITERATIONS: usize = 4096;

pub(super) fn if_(b: &mut Builder, ctx: &mut Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let node = ctx.node;
    let condition = known_input(node, inputs, 0, "the condition")?.const_ints()?;
    let branch = if condition.first().is_some_and(|&c| c != 0) { "then_branch" } else { "else_branch" };
    run_body(b, ctx, body(node, branch)?, vec![])
}

/// Loop: the body run while the iteration count is below the trip count (when given) and the condition holds; both
/// must be known, the condition after every iteration too. Gives the final loop-carried values, then each scan
/// output's values of all iterations stacked along a new first axis.
pub(super) fn loop_(b: &mut Builder, ctx: &mut Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let node = ctx.node;
    let graph = body(node, "body")?;
    let present = |i: usize| inputs.get(i).and_then(Option::as_ref).is_some();
    let trips = if present(0) { Some(known_input(node, inputs, 0, "the trip count")?.const_ints()?.first().copied().unwrap_or(0)) } else { None };
    let mut going = !present(1) || known_input(node, inputs, 1, "the condition")?.const_ints()?.first().is_some_and(|&c| c != 0);
    let mut carried: Vec<Value> = inputs.iter().skip(2).map(|v| v.clone().ok_or("a loop-carried value is missing")).collect::<Result<_, _>>()?;
    let n_carried = carried.len();
    if graph.output.len() < 1 + n_carried {
        return Err(format!("the body gives {} outputs for {n_carried} loop-carried values and the condition", graph.output.len()));
    }
    let mut scans: Vec<Vec<Value>> = vec![vec![]; graph.output.len() - 1 - n_carried];
    let mut i = 0i64;
    while going && trips.is_none_or(|m| i < m) {
        if i as usize >= MAX_ITERATIONS {
            return Err(format!("more than {MAX_ITERATIONS} iterations; tfc unrolls loops"));
        }
        let mut bound = vec![
            Value::Known(Known::new(Elem::INT64, vec![], Values::Int(vec![int_dim(i)]))),
            Value::Known(Known::new(Elem::BOOL, vec![], Values::Int(vec![Dim::from(1u64)]))),
        ];
        bound.extend(carried);
        let mut outputs = run_body(b, ctx, graph, bound)?.into_iter();
        let condition = outputs.next().ok_or("the body gives no condition")?;
        going = known_of(&condition)
            .ok_or("the loop's condition is computed at run time; tfc unrolls loops whose iterations are known")?
            .const_ints()?
            .first()
            .is_some_and(|&c| c != 0);
        carried = outputs.by_ref().take(n_carried).collect();
        for (scan, v) in scans.iter_mut().zip(outputs) {
            scan.push(v);
        }
        i += 1;
    }
    let mut results = carried;
    for (k, values) in scans.iter().enumerate() {
        results.push(stack(b, &format!("{}.scan{k}", ctx.base()), values, 0)?);
    }
    Ok(results)
}

/// Scan (opset 9 on): the body run once per position of the scan inputs' scan axes (each forward or backward), on
/// the state and that position's slices; gives the final state, then each scan output's values stacked along its
/// axis (appended, or prepended when backward).
pub(super) fn scan(b: &mut Builder, ctx: &mut Ctx, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let node = ctx.node;
    let base = ctx.base();
    let graph = body(node, "body")?;
    let values: Vec<&Value> = inputs.iter().map(|v| v.as_ref().ok_or("an input is missing")).collect::<Result<_, _>>()?;
    let m = ctx.int("num_scan_inputs", 0) as usize;
    if m == 0 || m > values.len() || graph.output.len() < values.len() - m {
        return Err(format!("{m} scan inputs of {} inputs and {} body outputs", values.len(), graph.output.len()));
    }
    let (states, scanned) = values.split_at(values.len() - m);
    let k = graph.output.len() - states.len();
    let list = |name: &str, len: usize| ctx.ints(name).filter(|v| !v.is_empty()).unwrap_or(vec![0; len]);
    let (in_dirs, in_axes, out_dirs, out_axes) = (list("scan_input_directions", m), list("scan_input_axes", m), list("scan_output_directions", k), list("scan_output_axes", k));
    if in_dirs.len() != m || in_axes.len() != m || out_dirs.len() != k || out_axes.len() != k {
        return Err("scan directions and axes need one entry per scan input or output".into());
    }
    let mut axes = Vec::new();
    let mut steps = None;
    for (j, v) in scanned.iter().enumerate() {
        let shape = const_shape(b, v)?;
        let axis = normalize_axis(in_axes[j], shape.len())?;
        if steps.is_some_and(|s| s != shape[axis]) {
            return Err("the scan inputs differ in length along their scan axes".into());
        }
        steps = Some(shape[axis]);
        axes.push(axis);
    }
    let steps = steps.unwrap_or(0) as usize;
    if steps > MAX_ITERATIONS {
        return Err(format!("{steps} iterations, more than the {MAX_ITERATIONS} tfc unrolls"));
    }
    let mut state: Vec<Value> = states.iter().map(|&v| v.clone()).collect();
    let mut outputs: Vec<Vec<Value>> = vec![vec![]; k];
    for t in 0..steps {
        let mut bound = state;
        for (j, v) in scanned.iter().enumerate() {
            let at = if in_dirs[j] != 0 { steps - 1 - t } else { t } as u64;
            let part = slice(b, &format!("{base}.in{j}_{at}"), v, axes[j], &Dim::from(at), &Dim::from(at + 1), 1)?;
            let mut shape = b.shape(&part);
            shape.remove(axes[j]);
            bound.push(reshape(b, &format!("{base}.in{j}_{at}.element"), &part, shape)?);
        }
        let mut results = run_body(b, ctx, graph, bound)?;
        let elements = results.split_off(states.len());
        state = results;
        for (out, v) in outputs.iter_mut().zip(elements) {
            out.push(v);
        }
    }
    let mut results = state;
    for (j, mut values) in outputs.into_iter().enumerate() {
        if out_dirs[j] != 0 {
            values.reverse();
        }
        let rank = values.first().map_or(0, |v| b.shape(v).len());
        results.push(stack(b, &format!("{base}.out{j}"), &values, normalize_axis(out_axes[j], rank + 1)?)?);
    }
    Ok(results)
}

/// The graph attribute `name` of a node.
fn body<'g>(node: &'g NodeProto, name: &str) -> Result<&'g GraphProto, String> {
    node.attribute.iter().find(|a| a.name == name).and_then(|a| a.g.as_deref()).ok_or_else(|| format!("has no `{name}` graph"))
}

/// Lowers a body graph, its inputs bound to `inputs`, in a scope inside the node's; gives its outputs.
fn run_body(b: &mut Builder, ctx: &mut Ctx, graph: &GraphProto, inputs: Vec<Value>) -> Result<Vec<Value>, String> {
    if inputs.len() != graph.input.len() {
        return Err(format!("the body `{}` takes {} inputs, given {}", graph.name, graph.input.len(), inputs.len()));
    }
    let mut scope = Scope::new(Some(ctx.scope));
    for t in &graph.initializer {
        let loaded = crate::onnx::tensor::load(t, ctx.env.model, ctx.env.external).map_err(|m| format!("initializer `{}` of the body: {m}", t.name))?;
        scope.values.insert(t.name.clone(), Value::Known(Rc::new(Known::from_loaded(loaded))));
    }
    for (formal, v) in graph.input.iter().zip(inputs) {
        scope.values.insert(formal.name.clone(), v);
    }
    let order = crate::onnx::topological_order(&graph.node)?;
    lower_nodes(b, &graph.node, &order, &mut scope, ctx.env).map_err(|e| {
        let n = &graph.node[e.index];
        format!("in the body `{}`, node `{}` ({}): {}", graph.name, n.name, n.op_type, e.message)
    })?;
    graph.output.iter().map(|o| scope.get(&o.name).cloned().ok_or_else(|| format!("the body's output `{}` is produced by no node", o.name))).collect()
}

/// Values of one shape joined along a new axis `axis`.
fn stack(b: &mut Builder, base: &str, values: &[Value], axis: usize) -> Result<Value, String> {
    let first = values.first().ok_or("a scan output of no iterations (its shape is unknown)")?;
    let mut shape = b.shape(first);
    shape.insert(axis, Dim::from(1u64));
    let parts: Vec<Value> = values.iter().enumerate().map(|(i, v)| reshape(b, &format!("{base}.{i}"), v, shape.clone())).collect::<Result<_, _>>()?;
    concat(b, base, &parts.iter().collect::<Vec<_>>(), axis)
}
